// A stage checks free space where it writes before writing, sparse-aware, and fails early with the numbers.
import { execa } from 'execa';
import { mkdir, readdir } from 'node:fs/promises';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ROOT, toyProject, type ToyProject } from '../helpers/toy.ts';

let toy: ToyProject;
let small: string;
beforeEach(async () => {
  toy = await toyProject();
  small = path.join(toy.dir, 'small');
  await mkdir(small);
  await execa('mount', ['-t', 'tmpfs', '-o', 'size=24m', 'tmpfs', small]);
});
afterEach(async () => {
  await execa('umount', [small], { reject: false });
  await toy.cleanup();
});

describe('free space', () => {
  it('a sparse 2 GiB disk fits where its 16 MiB of data fit; its copy is refused early with the numbers', async () => {
    await toy.configure({ diskMiB: 2048 });
    const cache = path.join(small, 'cache');
    const result = await execa(process.execPath, ['--import', 'tsx', 'test/fixtures/toy-taskfile.ts', 'build', 'disk-copy', '--config', path.join(toy.dir, 'config.json'), '--cache-dir', cache], {
      cwd: ROOT,
      reject: false,
      env: { CI: '1' },
    });
    expect(result.exitCode).toBe(1);
    // the first disk (2 GiB apparent, 16 MiB allocated) was written and published
    expect(result.stdout).toMatch(/✔ disk: ran/);
    expect(result.stdout).toMatch(/disk-copy: failed .*not enough space for a copy of disk\.raw in .*: needs 16\.0 MiB, \d+(\.\d)? (KiB|MiB) free/);
    expect(await readdir(path.join(cache, 'staging'))).toEqual([]); // nothing half-written kept
  });
});

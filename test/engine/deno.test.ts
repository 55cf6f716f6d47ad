// The same sources on Deno 2: the demo's plan, and a small graph built, interrupted and shared with Node.
import { execa } from 'execa';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { hashFileContent } from '../../lib/caching/file-hash.ts';
import { ROOT, toyProject, type ToyProject } from '../helpers/toy.ts';

const DENO = path.join(ROOT, 'node_modules/.bin/deno');
const deno = (args: string[]) => execa(DENO, ['run', '-A', ...args], { cwd: ROOT, reject: false, env: { CI: '1' } });

let toy: ToyProject;
beforeEach(async () => {
  toy = await toyProject();
});
afterEach(async () => {
  await toy.cleanup();
});

describe('Deno', () => {
  it('plans the demo image without writing anything', async () => {
    const cache = await mkdtemp(path.join(tmpdir(), 'deno-plan-'));
    try {
      const result = await deno(['Taskfile.ts', 'plan', '--cache-dir', cache]);
      expect(result.exitCode, result.stderr).toBe(0);
      expect(result.stdout).toMatch(/^create-pool\s+run\s+/m);
      expect(result.stdout).toMatch(/12 of 12 task\(s\) would run/);
      expect(await readdir(cache)).toEqual([]);
    } finally {
      await rm(cache, { recursive: true, force: true });
    }
  });

  it('hashes files, stops a command past its time limit and reads the mount table as Node does', async () => {
    const file = path.join(toy.dir, 'data.bin');
    await writeFile(file, randomBytes(3 * 1024 * 1024 + 11));
    const result = await deno(['test/fixtures/runtime-check.ts', file]);
    expect(result.exitCode, result.stderr).toBe(0);
    expect(JSON.parse(result.stdout)).toEqual({ sha256: await hashFileContent(file), timedOutAfterMs: 300, root: true });
  });

  it('builds a small graph, and Node finds it all cached', async () => {
    const config = ['--config', path.join(toy.dir, 'config.json'), '--cache-dir', toy.cache];
    const built = await deno(['test/fixtures/toy-taskfile.ts', 'build', ...config]);
    expect(built.exitCode, built.stderr).toBe(0);
    expect((await toy.runs()).sort()).toEqual(['a', 'b', 'c', 'd']);
    const again = await toy.run('build');
    expect(again.stdout).toMatch(/0 ran, 4 cached/);
  });
});

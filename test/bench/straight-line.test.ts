// The image benchmark's baseline (bench/image/straight-line.sh) runs the stages' commands by hand;
// when a stage or the demo system changes, it must still build, or the benchmark breaks unseen.
import { execa } from 'execa';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { demoSystem, leftovers, releaseAndRemove, uniquePool } from '../helpers/reliability.ts';
import { ROOT } from '../helpers/toy.ts';

const POOL = uniquePool('bline');
let work: string;
beforeAll(async () => {
  work = await mkdtemp(path.join(tmpdir(), 'straight-line-'));
});
afterAll(() => releaseAndRemove(work, [POOL], () => rm(work, { recursive: true, force: true })));

describe('the benchmark baseline script', () => {
  it('builds the image pair from the demo system and leaves nothing behind', async () => {
    const toplevel = await demoSystem();
    const out = path.join(work, 'out');
    const result = await execa('bash', [path.join(ROOT, 'bench/image/straight-line.sh'), toplevel, out, 'qcow2', POOL], { reject: false, cwd: ROOT });
    const log = await readFile(path.join(out, 'script.log'), 'utf8').catch(() => '');
    expect(result.exitCode, `${result.stderr}\n${log.slice(-2000)}`).toBe(0);
    expect(result.stdout).toMatch(/^phase convert \d+$/m);
    for (const disk of ['boot', 'root']) {
      const info = JSON.parse((await execa('qemu-img', ['info', '--output=json', path.join(out, `nixos.${disk}.qcow2`)])).stdout) as { format: string };
      expect(info.format).toBe('qcow2');
    }
    expect(await leftovers(work, [POOL])).toEqual({ pools: [], mounts: [], loops: [] });
  });
});

// The host-wide lock: real flock(1) on a real file, against holders in this process and in others.
import { execa } from 'execa';
import { appendFile, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createHostLock } from '../../lib/execution/host-lock.ts';
import { ROOT } from '../helpers/toy.ts';
import { until } from '../helpers/wait.ts';

let dir: string;
let lockFile: string;
beforeEach(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'host-lock-'));
  lockFile = path.join(dir, 'sub/zfs.lock');
});
afterEach(() => rm(dir, { recursive: true, force: true }));

const sleep = (ms: number): Promise<void> => new Promise((done) => setTimeout(done, ms));
/** True when another process could take the lock right now. */
const free = async (): Promise<boolean> => (await execa('flock', ['-n', lockFile, 'true'], { reject: false })).exitCode === 0;

describe.each(['perl', 'sh'] as const)('host lock held by %s', (helper) => {
  it('waits for another process that holds the file, and creates its folder', async () => {
    const trace = path.join(dir, 'trace');
    const lock = createHostLock(lockFile, { helper });
    await lock.hold(async () => undefined); // creates sub/
    const other = execa('flock', ['-x', lockFile, 'sh', '-c', `echo other-in >> ${trace}; sleep 0.5; echo other-out >> ${trace}`]);
    await until(async () => (await readFile(trace, 'utf8').catch(() => '')).includes('other-in'), 'the other holder to enter', 20_000);
    await lock.hold(() => appendFile(trace, 'ours\n'));
    await other;
    expect((await readFile(trace, 'utf8')).split('\n').filter(Boolean)).toEqual(['other-in', 'other-out', 'ours']);
  });

  it('holds it against other processes only while the work runs, also when the work fails', async () => {
    const lock = createHostLock(lockFile, { helper });
    let seenInside = true;
    await lock.hold(async () => {
      seenInside = await free();
    });
    expect(seenInside).toBe(false);
    expect(await free()).toBe(true);
    await expect(lock.hold(async () => Promise.reject(new Error('boom')))).rejects.toThrow('boom');
    expect(await free()).toBe(true);
  });

  it('runs holds of one process one at a time, in order', async () => {
    const lock = createHostLock(lockFile, { helper });
    const order: string[] = [];
    let inside = 0;
    let most = 0;
    const work = (name: string, ms: number) => async () => {
      inside += 1;
      most = Math.max(most, inside);
      order.push(`${name}-in`);
      await sleep(ms);
      order.push(`${name}-out`);
      inside -= 1;
      return name;
    };
    const results = await Promise.all([lock.hold(work('a', 80)), lock.hold(work('b', 10)), lock.hold(work('c', 30))]);
    expect(results).toEqual(['a', 'b', 'c']);
    expect(most).toBe(1);
    expect(order).toEqual(['a-in', 'a-out', 'b-in', 'b-out', 'c-in', 'c-out']);
  });

  it('does not keep a process alive after its last hold', async () => {
    const script = `import { createHostLock } from './lib/execution/host-lock.ts';
await createHostLock(${JSON.stringify(lockFile)}, { helper: ${JSON.stringify(helper)} }).hold(async () => console.log('held'));`;
    const result = await execa(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { cwd: ROOT, timeout: 20_000, reject: false });
    expect(result.timedOut).toBe(false);
    expect(result.exitCode, result.stderr).toBe(0);
    expect(result.stdout).toBe('held');
    expect(await free()).toBe(true);
  });

  it('survives a Ctrl-C to the process group (cleanups still take it) and ends with its process', async () => {
    const script = `import { createHostLock } from './lib/execution/host-lock.ts';
const lock = createHostLock(${JSON.stringify(lockFile)}, { helper: ${JSON.stringify(helper)} });
await lock.hold(async () => undefined);
process.on('SIGINT', async () => {
  await lock.hold(async () => console.log('held after SIGINT'));
  process.exit(0);
});
console.log('ready');
setInterval(() => undefined, 1000);`;
    // its own process group, as a build started from a terminal is: the signal goes to every member
    const child = execa(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { cwd: ROOT, timeout: 20_000, reject: false, detached: true });
    await new Promise<void>((ready) => child.stdout!.on('data', (chunk: Buffer) => chunk.toString().includes('ready') && ready()));
    process.kill(-child.pid!, 'SIGINT');
    const result = await child;
    expect(result.stderr).not.toMatch(/EPIPE|helper exited/);
    expect(result.stdout).toContain('held after SIGINT');
    expect(result.exitCode).toBe(0);
    // no helper outlives the process that started it
    await until(async () => (await execa('pgrep', ['-f', lockFile], { reject: false })).exitCode === 1, 'no process holding the lock file', 5000);
    expect(await free()).toBe(true);
  });

  it('names the file when the lock cannot be taken', async () => {
    const lock = createHostLock('/proc/version/not-a-folder/zfs.lock', { helper });
    await expect(lock.hold(async () => undefined)).rejects.toThrow(/not-a-folder/);
  });
});

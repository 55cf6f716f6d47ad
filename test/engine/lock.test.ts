// The cache lock under races: a dead run's lock taken over by two runs at once, and release.
import { getEventListeners } from 'node:events';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { lockCache, removeIfStill } from '../../lib/caching/lock.ts';
import { deadPid } from '../helpers/wait.ts';

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'lock-test-'));
});
afterEach(() => rm(dir, { recursive: true, force: true }));


describe('the cache lock', () => {
  it('goes to exactly one of two runs that find a dead run\'s lock at the same moment', async () => {
    for (let round = 0; round < 10; round++) {
      await writeFile(path.join(dir, 'lock'), JSON.stringify({ pid: deadPid(), command: 'build', since: 'then' }));
      const takers = await Promise.all([lockCache(dir, { command: 'one', noWait: true }), lockCache(dir, { command: 'two', noWait: true })]);
      const held = takers.filter((taker) => taker.ok);
      expect(held, `round ${round}`).toHaveLength(1);
      expect(takers.find((taker) => !taker.ok)).toMatchObject({ ok: false, error: { reason: 'busy' } });
      for (const taker of held) if (taker.ok) await taker.value.release();
      expect(await readdir(dir)).toEqual([]); // nothing moved aside is left
    }
  });

  it('a run that judged the lock stale a moment ago does not remove the one another run took since', async () => {
    const dead = JSON.stringify({ pid: deadPid(), command: 'build', since: 'then' });
    await writeFile(path.join(dir, 'lock'), dead);
    const first = await lockCache(dir, { command: 'first', noWait: true }); // takes over the dead lock
    if (!first.ok) throw new Error('not taken');
    const fresh = await readFile(path.join(dir, 'lock'), 'utf8');
    // a second run read the dead owner before the first took over, and acts on it only now
    expect(await removeIfStill(path.join(dir, 'lock'), dead)).toBe(false);
    expect(await readFile(path.join(dir, 'lock'), 'utf8')).toBe(fresh);
    expect(await readdir(dir)).toEqual(['lock']);
    await first.value.release();
  });

  it('takes over a lock written before the last reboot, even though its pid is alive now', async () => {
    // pid 1 is always alive; after a reboot it is not the run that wrote the lock
    await writeFile(path.join(dir, 'lock'), JSON.stringify({ pid: 1, command: 'build', since: 'before the reboot', boot: 'another-boot-id' }));
    const taken = await lockCache(dir, { command: 'build', noWait: true });
    expect(taken.ok).toBe(true);
    if (taken.ok) await taken.value.release();
    // the same pid with this boot's id is a live holder: refused
    const boot = (await readFile('/proc/sys/kernel/random/boot_id', 'utf8')).trim();
    await writeFile(path.join(dir, 'lock'), JSON.stringify({ pid: 1, command: 'build', since: 'now', boot }));
    expect(await lockCache(dir, { command: 'build', noWait: true })).toMatchObject({ ok: false, error: { reason: 'busy' } });
  });

  it('release leaves a lock that names another run alone', async () => {
    const taken = await lockCache(dir, { command: 'build' });
    if (!taken.ok) throw new Error('not taken');
    const other = JSON.stringify({ pid: process.ppid, command: 'build', since: 'now' });
    await writeFile(path.join(dir, 'lock'), other); // as if the lock had been taken over meanwhile
    await taken.value.release();
    expect(await readFile(path.join(dir, 'lock'), 'utf8')).toBe(other);
  });

  it('waits without piling up abort listeners, and stops waiting on abort', async () => {
    await writeFile(path.join(dir, 'lock'), JSON.stringify({ pid: process.ppid, command: 'build', since: 'now' }));
    const controller = new AbortController();
    const waiting = lockCache(dir, { command: 'build', signal: controller.signal, pollMs: 5 });
    await new Promise((resolve) => setTimeout(resolve, 300)); // about 60 polls
    expect(getEventListeners(controller.signal, 'abort').length).toBeLessThanOrEqual(1);
    controller.abort();
    expect(await waiting).toMatchObject({ ok: false, error: { reason: 'aborted' } });
  });
});

// The zfs-fuse daemon stops answering in the middle of install (stopped with SIGSTOP, which leaves
// its clients waiting as a deadlock does): the build must end with a message saying what happened
// and what to do, instead of waiting forever on the mounted datasets.
import { execa } from 'execa';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { imageProject, type ImageProject } from '../helpers/image.ts';
import {
  children,
  cleanupSteps,
  leftovers,
  uniquePool,
  withStatus,
  zfsFuseDaemons,
  zfsFuseStarter,
  ZFS_FUSE_STARTER_FILE,
} from '../helpers/reliability.ts';
import { running, until } from '../helpers/wait.ts';
import { makeShims, type Shims } from '../helpers/shims.ts';
import { detachDeadMounts, stopZfsFuseProcess } from '../../tasks/image/zfs/zfs-fuse-host.ts';
import { otherZfsUsers, useZfs } from '../../tasks/image/stages/zfs-session.ts';
import { createZfsFuseDriver } from '../../tasks/image/zfs/zfs-fuse.ts';
import { createExec } from '../../lib/execution/exec.ts';

const POOL = uniquePool('relhung');
let scratch: string;
let shims: Shims;
let project: ImageProject;
/** Daemons this file stopped with SIGSTOP: continued (or killed) whatever happens. */
const stopped = new Set<number>();
/** Daemons this file started itself, with their pid file's folder: killed and removed at the end if a failed test left them. */
const ownDaemons = new Map<number, string>();
const started = children();

beforeAll(async () => {
  scratch = await mkdtemp(path.join(tmpdir(), 'rel-hung-'));
  shims = await makeShims(scratch, ['chroot']);
  // a short limit: the build asks the daemon every half second and gives it 2 s to answer
  project = await imageProject(POOL, { PATH: shims.path, ZFS_IMAGE_ZFS_TIMEOUT: '2' });
});

afterAll(async () => {
  await cleanupSteps(
    () => shims?.unpause(),
    () => {
      for (const pid of stopped) {
        try {
          process.kill(pid, 'SIGCONT');
        } catch {
          // gone already
        }
      }
    },
    () => started.settle(),
    async () => {
      for (const pid of [...ownDaemons.keys()]) {
        if (await retireOwnDaemon(pid, 0)) await rm(ZFS_FUSE_STARTER_FILE, { force: true });
      }
    },
    () => project?.cleanup(),
    () => rm(scratch, { recursive: true, force: true }),
  );
});

/** Starts a zfs-fuse daemon of this file's own, as a build would (pid file in a zfs-fuse-XXXXXX folder), and waits until it answers. */
async function startOwnDaemon(): Promise<{ daemon: number; pidDir: string; pidFile: string }> {
  const pidDir = await mkdtemp(path.join(tmpdir(), 'zfs-fuse-'));
  const pidFile = path.join(pidDir, 'zfs-fuse.pid');
  await execa('zfs-fuse', ['--pidfile', pidFile, '--no-kstat-mount']);
  const daemon = Number((await readFile(pidFile, 'utf8')).trim());
  ownDaemons.set(daemon, pidDir); // from here on afterAll stops it, whatever happens
  await until(async () => (await execa('zpool', ['list'], { reject: false })).exitCode === 0, 'the daemon to answer', 15_000);
  return { daemon, pidDir, pidFile };
}

/**
 * Stops one of this file's own daemons if a test left it (continued first, if stopped; SIGKILL
 * after `graceMs`) and removes its folder. Returns whether there was one to stop.
 */
async function retireOwnDaemon(daemon: number, graceMs: number): Promise<boolean> {
  const pidDir = ownDaemons.get(daemon);
  ownDaemons.delete(daemon);
  stopped.delete(daemon);
  if (pidDir) await rm(pidDir, { recursive: true, force: true });
  // only while it is still that zfs-fuse: once stopped, its pid may be reused
  if (!(await zfsFuseDaemons()).includes(daemon)) return false;
  process.kill(daemon, 'SIGCONT');
  return (await stopZfsFuseProcess(daemon, createExec(), graceMs)) !== 'not-running';
}

/**
 * Starts a build, pauses it at install's chroot (datasets mounted) and stops the daemon. The build
 * stays paused there: only the build's watch can find the hang (install's own file operations might
 * be served from the kernel's cache). The caller unpauses it.
 */
async function hangDuringInstall(): Promise<{ result: Promise<{ exitCode?: number }>; output(): string; daemon: number }> {
  await shims.pause('chroot', 'ANY');
  const child = started.track(project.start('build'));
  let output = '';
  child.stdout?.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr?.on('data', (chunk: Buffer) => (output += chunk.toString()));
  await shims.waitPaused();
  const daemons = await zfsFuseDaemons();
  expect(daemons).toHaveLength(1);
  const daemon = daemons[0]!;
  process.kill(daemon, 'SIGSTOP');
  stopped.add(daemon);
  return { result: child, output: () => output, daemon };
}

describe('a zfs-fuse daemon that stops answering during install', () => {
  it('that the build started: the build kills it, fails with what happened, leaves nothing behind, and the next build resumes', async (ctx) => {
    // the build must start its own daemon: skip where another daemon or ZFS user is around
    if ((await zfsFuseDaemons()).length > 0 || (await otherZfsUsers()).length > 0) ctx.skip();
    const first = await project.build('--json');
    expect(first.exitCode, first.stderr).toBe(0);
    await project.configure({ contents: [] }); // install and what follows are stale again

    const hang = await hangDuringInstall();
    await until(() => hang.output().includes('killed the hung zfs-fuse daemon this build started and detached its mounts'), 'the kill', 60_000);
    expect(hang.output()).toMatch(/zfs-fuse did not answer `\S*zpool list -H -o name` within 2 s: the daemon looks hung/);
    await shims.unpause(); // install goes on, into mounts whose daemon is gone
    const result = await hang.result;
    expect(result.exitCode).toBe(1);
    expect(await zfsFuseDaemons()).toEqual([]);
    expect(await zfsFuseStarter()).toBeUndefined();
    expect(await leftovers(project.dir, [POOL])).toEqual({ pools: [], mounts: [], loops: [] });

    const next = await project.build();
    expect(next.exitCode, next.stderr + next.stdout).toBe(0);
    expect(withStatus(next.statuses, 'cached')).toEqual(expect.arrayContaining(['create-pool', 'partition', 'system']));
    expect(withStatus(next.statuses, 'ran')).toEqual(expect.arrayContaining(['mount', 'install', 'export-pool', 'convert:root']));
    // it started a daemon of its own and stopped it at its end
    expect(await zfsFuseDaemons()).toEqual([]);
  });

  it('that someone else started: the build says so and waits; killing the daemon by hand ends it', async (ctx) => {
    // this test plays the someone else, and kills its daemon: skip where another daemon or ZFS user is around
    if ((await zfsFuseDaemons()).length > 0 || (await otherZfsUsers()).length > 0) ctx.skip();
    const { daemon } = await startOwnDaemon(); // not recorded as a build's: the build must not kill it
    try {
      await project.configure({ contents: [{ source: 'motd', target: '/etc/motd' }] });
      const hang = await hangDuringInstall();
      await until(() => /another build or you started this zfs-fuse daemon, so it is left running/.test(hang.output()), 'the warning', 60_000);
      expect(hang.output()).toMatch(/zfs-fuse did not answer `\S*zpool list -H -o name` within 2 s/);
      expect(hang.daemon).toBe(daemon);
      expect(await zfsFuseDaemons()).toEqual([daemon]); // still there
      // the recovery the message gives: kill it, detach its mounts
      process.kill(daemon, 'SIGKILL');
      stopped.delete(daemon);
      await shims.unpause();
      const result = await hang.result;
      expect(result.exitCode).toBe(1);
      await detachDeadMounts(createExec());
      expect(await leftovers(project.dir, [POOL])).toEqual({ pools: [], mounts: [], loops: [] });
    } finally {
      await retireOwnDaemon(daemon, 0);
    }
    // and the next build sweeps what the failed one left and resumes
    const next = await project.build();
    expect(next.exitCode, next.stderr + next.stdout).toBe(0);
    expect(withStatus(next.statuses, 'cached')).toContain('create-pool');
  });
});

describe('a zfs-fuse daemon that is hung before the build starts', () => {
  it('the build fails at its first ZFS command within the limit, says what to do, and leaves the daemon to its owner', async (ctx) => {
    // this test plays the daemon's owner and stops it: skip where another daemon or ZFS user is around
    if ((await zfsFuseDaemons()).length > 0 || (await otherZfsUsers()).length > 0) ctx.skip();
    const { daemon } = await startOwnDaemon();
    try {
      await project.configure({ rootSize: 152 }); // a new root disk: create-pool must run
      process.kill(daemon, 'SIGSTOP');
      stopped.add(daemon);
      const result = await project.build();
      expect(result.exitCode, result.stdout).toBe(1);
      expect(result.stdout + result.stderr).toMatch(/zfs-fuse did not answer `\S*zpool list -H -o name` within 2 s: the daemon looks hung/);
      expect(result.statuses['create-pool']).toBe('failed');
      expect(withStatus(result.statuses, 'ran')).toEqual(expect.arrayContaining(['create-disks:root']));
      expect(await zfsFuseDaemons()).toEqual([daemon]); // not this build's to kill
      process.kill(daemon, 'SIGCONT');
      stopped.delete(daemon);
      // once it answers again, the next build goes on from create-disks, and leaves the daemon running
      const next = await project.build();
      expect(next.exitCode, next.stderr + next.stdout).toBe(0);
      expect(next.statuses['create-disks:root']).toBe('cached');
      expect(next.statuses['create-pool']).toBe('ran');
      expect(await leftovers(project.dir, [POOL])).toEqual({ pools: [], mounts: [], loops: [] });
      expect(await zfsFuseDaemons()).toEqual([daemon]);
    } finally {
      await retireOwnDaemon(daemon, 20_000);
    }
  });
});

describe('a zfs-fuse daemon whose starter is dead, hung when the last user leaves', () => {
  it('the last user leaves it running and says why, without stalling; once it answers again, the next last user stops it', async (ctx) => {
    // this test plays the dead starter: skip where another daemon or ZFS user is around
    if ((await zfsFuseDaemons()).length > 0 || (await otherZfsUsers()).length > 0) ctx.skip();
    const { daemon, pidDir, pidFile } = await startOwnDaemon();
    try {
      // recorded as a build's would be, by a build that has ended since
      const ended = execa('true');
      const dead = ended.pid!;
      await ended;
      await writeFile(ZFS_FUSE_STARTER_FILE, `${dead}\n${pidFile}\n`);

      const lines: string[] = [];
      const driver = createZfsFuseDriver({ commandTimeoutMs: 2_000 });
      const previous = process.env['ZFS_IMAGE_ZFS_TIMEOUT'];
      process.env['ZFS_IMAGE_ZFS_TIMEOUT'] = '2'; // the limit the last user's check runs under
      try {
        const use = await useZfs(driver, createExec(), (line) => lines.push(line));
        process.kill(daemon, 'SIGSTOP');
        stopped.add(daemon); // continued (then stopped by the last user) whatever happens
        // before the fix this waited on the daemon forever, holding the lock every build registers under
        await use.release();
      } finally {
        if (previous === undefined) delete process.env['ZFS_IMAGE_ZFS_TIMEOUT'];
        else process.env['ZFS_IMAGE_ZFS_TIMEOUT'] = previous;
      }
      expect(lines.join('\n')).toMatch(/^left zfs-fuse running: it did not answer `zpool list` \(.*\); it looks hung, see the README's recovery steps$/m);
      expect(await zfsFuseDaemons()).toEqual([daemon]); // not stopped: it might only be slow
      expect(await zfsFuseStarter()).toBe(dead); // kept, so a later last user can still stop it
      expect(await otherZfsUsers()).toEqual([]);

      // The daemon answers again: the next build out stops it and removes its records.
      process.kill(daemon, 'SIGCONT');
      const again: string[] = [];
      const use = await useZfs(createZfsFuseDriver({ commandTimeoutMs: 10_000 }), createExec(), (line) => again.push(line));
      await use.release();
      expect(again).toEqual([
        `stopping the zfs-fuse daemon a finished build had started (pid ${daemon}; a few seconds)`,
        `stopped the zfs-fuse daemon a finished build had started (pid ${daemon})`,
      ]);
      expect(await zfsFuseDaemons()).toEqual([]);
      expect(await zfsFuseStarter()).toBeUndefined();
      expect(existsSync(pidDir)).toBe(false);
    } finally {
      await retireOwnDaemon(daemon, 20_000);
      if ((await zfsFuseStarter()) !== undefined && !(await zfsFuseDaemons()).length) await rm(ZFS_FUSE_STARTER_FILE, { force: true });
    }
  });
});

describe('stopping a zfs-fuse daemon by its pid', () => {
  it('leaves a process that is not zfs-fuse alone, and SIGKILLs a daemon still there when the grace after SIGTERM ends', async (ctx) => {
    if ((await zfsFuseDaemons()).length > 0 || (await otherZfsUsers()).length > 0) ctx.skip();
    // a stale pid file naming some other process
    const other = execa('sleep', ['60']);
    try {
      expect(await stopZfsFuseProcess(other.pid!, createExec(), 0)).toBe('not-running');
      expect(await running(other.pid!)).toBe(true);
    } finally {
      other.kill('SIGKILL');
      await other.catch(() => undefined);
    }

    const { daemon } = await startOwnDaemon();
    try {
      // stopped, it keeps SIGTERM pending: it looks like a daemon that does not exit
      process.kill(daemon, 'SIGSTOP');
      stopped.add(daemon);
      expect(await stopZfsFuseProcess(daemon, createExec(), 1_000)).toBe('killed');
      stopped.delete(daemon);
      expect(await zfsFuseDaemons()).toEqual([]);
      expect(await stopZfsFuseProcess(daemon, createExec(), 0)).toBe('not-running');
    } finally {
      await retireOwnDaemon(daemon, 0);
    }
  });
});

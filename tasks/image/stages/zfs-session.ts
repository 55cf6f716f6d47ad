import { mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { isAlive } from '../../../lib/caching/lock.ts';
import type { RunNote, TaskContext } from '../../../lib/engine/task.ts';
import type { ZfsDriver, ZfsSession } from '../zfs/driver.ts';
import { isZfsFuseProcess, pidIn, stopZfsFuseProcess, ZFS_USERS_DIR, zfsFuseRequests } from '../zfs/zfs-fuse-host.ts';
import { CommandError, ranAndFailed } from '../../../lib/execution/command-error.ts';
import type { Exec } from '../../../lib/execution/types.ts';
import { createHostLock, type HostLock } from '../../../lib/execution/host-lock.ts';

export { ZFS_USERS_DIR };

/** Names the build that started the zfs-fuse daemon (and its pid file), so the last build out can stop it if that one is gone. */
export const STARTER_FILE = '/run/nixos-zfs-image/zfs-fuse-started-by';

/**
 * Registering as a user and the last user's check-and-stop take turns on this lock: without it,
 * a build that registers just after the last one looked finds the daemon answering, then loses
 * it to that one's SIGTERM.
 */
export const ZFS_USERS_LOCK_FILE = '/run/nixos-zfs-image/zfs-users.lock';

/** The starter record: the pid of the build that started the daemon, and the daemon's pid file. */
async function readStarter(): Promise<{ starter: number; pidFile: string }> {
  const [starterLine = '', pidFile = ''] = (await readFile(STARTER_FILE, 'utf8').catch(() => '')).split('\n');
  return { starter: Number(starterLine.trim()), pidFile };
}

let usersLock: HostLock | undefined;
const registry = (): HostLock => (usersLock ??= createHostLock(ZFS_USERS_LOCK_FILE));

/** Live pids other than ours that registered as ZFS users; dead ones are removed. */
export async function otherZfsUsers(dir = ZFS_USERS_DIR): Promise<number[]> {
  const others: number[] = [];
  for (const name of await readdir(dir).catch(() => [] as string[])) {
    const pid = Number(name);
    if (!Number.isInteger(pid) || pid === process.pid) continue;
    if (isAlive(pid)) others.push(pid);
    else await rm(path.join(dir, name), { force: true });
  }
  return others;
}

/** A registered use of the ZFS daemon; `release` stops the daemon when this was its last user. */
export interface ZfsUse {
  /** Ends this use; what it did to the daemon goes to `note` (default: the log `useZfs` was given). */
  release(note?: RunNote): Promise<void>;
}

/**
 * Registers as a ZFS user and makes ZFS usable. The zfs-fuse daemon takes seconds to stop, so one
 * daemon serves a whole build (or shell); the last user out stops it if a build started it, even
 * another build that has ended since.
 */
export async function useZfs(driver: ZfsDriver, exec: Exec, log: (line: string) => void): Promise<ZfsUse> {
  const marker = path.join(ZFS_USERS_DIR, String(process.pid));
  // waits while a last user stops the daemon; once registered, no one stops it under us
  await registry().hold(async () => {
    await mkdir(ZFS_USERS_DIR, { recursive: true });
    await writeFile(marker, `${new Date().toISOString()}\n`);
  });
  let session: ZfsSession;
  try {
    session = await driver.prepare();
  } catch (error) {
    // not a user after all: a stale registration would keep the last real user from stopping its daemon
    await registry().hold(() => rm(marker, { force: true }));
    throw error;
  }
  if (session.started) {
    log(`started the ${driver.name} daemon; it is stopped when the last build or shell using it ends`);
    await removeDeadStartersFolder(session.pidFile);
    // the pid file's folder too: a build that stops the daemon for a dead starter removes it
    await writeFile(STARTER_FILE, `${process.pid}\n${session.pidFile ?? ''}\n`);
  }
  return {
    release: (note = (_level, line) => log(line)) => registry().hold(async () => {
      await rm(marker, { force: true });
      const others = await otherZfsUsers();
      if (others.length > 0) {
        if (session.started) note('info', `left the ${driver.name} daemon running: builds ${others.join(', ')} still use it`);
        return;
      }
      if (session.started) {
        // it takes seconds (zfs-fuse waits for its threads): the pause after the last task is this
        note('info', `stopping the ${driver.name} daemon started for this run (a few seconds)`);
        const result = await session.stop();
        if (result.reason) note('warn', result.reason);
        // Only a stopped daemon gives up its starter record; otherwise a later build may stop it.
        if (result.stopped) await rm(STARTER_FILE, { force: true });
        return;
      }
      const { starter, pidFile } = await readStarter();
      if (driver.name === 'zfs-fuse' && starter > 0 && !isAlive(starter)) {
        // The build that started the daemon has ended (or was killed) while we used it: we are the last user.
        if (await stopZfsFuseDaemon(exec, note, pidFile)) {
          if (DRIVER_PID_FILE.test(pidFile)) await rm(path.dirname(pidFile), { recursive: true, force: true });
          await rm(STARTER_FILE, { force: true });
        }
      }
    }),
  };
}

/** Only a folder the driver made for its pid file (zfs-fuse-XXXXXX), never anything else. */
const DRIVER_PID_FILE = /\/zfs-fuse-[^/]+\/zfs-fuse\.pid$/;

/**
 * A starter record left by a build killed while it stopped its daemon names a pid-file folder no
 * one removes: the daemon is gone (this build has just started one), so its folder goes too.
 */
async function removeDeadStartersFolder(newPidFile: string | undefined): Promise<void> {
  const { starter, pidFile } = await readStarter();
  if (!DRIVER_PID_FILE.test(pidFile) || pidFile === newPidFile || (starter > 0 && isAlive(starter))) return;
  const daemon = await pidIn(pidFile);
  if (daemon > 0 && isAlive(daemon)) return;
  await rm(path.dirname(pidFile), { recursive: true, force: true });
}

/** The use each driver has in the running build: later stages skip the daemon check (a round trip each). */
const usesInRun = new Map<string, Promise<ZfsUse>>();

/**
 * {@link useZfs} for the rest of a build: the first stage that needs ZFS checks
 * (or starts) the daemon, later ones reuse that; released once, at the end of the run.
 */
export async function ensureZfs(ctx: TaskContext<any>, driver: ZfsDriver): Promise<void> {
  const key = `zfs:${driver.name}`;
  let pending = usesInRun.get(key);
  if (!pending) {
    pending = useZfs(driver, ctx.exec, (line) => ctx.log(line));
    usesInRun.set(key, pending);
  }
  let use: ZfsUse;
  try {
    use = await pending;
  } catch (error) {
    // a failed check is not remembered: the next stage tries again
    if (usesInRun.get(key) === pending) usesInRun.delete(key);
    throw error;
  }
  // at the run's end no task's log is open: what release did goes to the build's notes
  ctx.atRunEnd(key, async (note) => {
    usesInRun.delete(key);
    await use.release(note);
  });
}

/**
 * Kills a hung zfs-fuse daemon if this process started it: the FUSE mounts' waiting file
 * operations then fail instead of waiting forever, and its dead mounts are detached. A daemon
 * another build or the user started is left alone. Returns whether it was killed.
 */
export async function killHungZfsFuse(exec: Exec): Promise<boolean> {
  const { starter, pidFile } = await readStarter();
  if (starter !== process.pid || pidFile === '') return false;
  // no SIGTERM first: a hung daemon does not act on it
  return (await stopZfsFuseProcess(await pidIn(pidFile), exec, 0)) !== 'not-running';
}

/**
 * Stops the daemon a build that has ended started (its pid file from the starter record), unless
 * a pool is still imported in it. Returns whether the starter record is done with.
 */
async function stopZfsFuseDaemon(exec: Exec, note: RunNote, pidFile: string): Promise<boolean> {
  // under the command lock and time limit: this runs holding the users lock, which every other build waits on
  let pools = '';
  try {
    pools = (await zfsFuseRequests(exec)('zpool', ['list', '-H', '-o', 'name'], { quiet: true })).stdout.trim();
  } catch (error) {
    const failure = error instanceof CommandError ? error.failure : undefined;
    if (failure?.timedOutAfterMs !== undefined) {
      note('warn', `left zfs-fuse running: it did not answer \`zpool list\` (${(error as Error).message}); it looks hung, see the README's recovery steps`);
      return false;
    }
    // only "no daemon answers" (zpool ran and failed) means no pools; anything else proves nothing
    if (!ranAndFailed(error)) {
      note('warn', `left zfs-fuse running: could not ask it for its pools (${(error as Error).message})`);
      return false;
    }
  }
  if (pools !== '') {
    note('warn', `left zfs-fuse running: pools still imported (${pools.split('\n').join(', ')})`);
    return false;
  }
  const pid = await pidIn(pidFile);
  if (await isZfsFuseProcess(pid)) note('info', `stopping the zfs-fuse daemon a finished build had started (pid ${pid}; a few seconds)`);
  // it waits for its worker threads, about 5 s; one that is still there after 30 s is stuck
  const how = await stopZfsFuseProcess(pid, exec, 30_000);
  if (how === 'exited') note('info', `stopped the zfs-fuse daemon a finished build had started (pid ${pid})`);
  if (how === 'killed') note('warn', `killed the zfs-fuse daemon a finished build had started (pid ${pid}): it did not exit within 30 s of SIGTERM`);
  if (how === 'still-running') note('warn', `left zfs-fuse (pid ${pid}) behind: it did not exit, even after SIGKILL`);
  // not-running: the daemon it started is gone; one that answers now is someone else's, and stays
  return how !== 'still-running';
}

/**
 * Starting the zfs-fuse daemon for a build when none answers, and stopping it afterwards, but
 * only if this build started it and no other pool is still imported in it.
 */
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CommandError } from '../../../lib/execution/command-error.ts';
import type { Exec } from '../../../lib/execution/types.ts';
import type { ZfsSession } from './driver.ts';
import { pidIn, stopZfsFuseProcess } from './zfs-fuse-host.ts';

/** What starting and stopping the daemon needs from the driver. */
export interface DaemonClient {
  readonly exec: Exec;
  /** The daemon binary. */
  readonly daemon: string;
  /** True when the daemon answers `zpool list`; throws when waiting on would not help (hung, Ctrl-C, no zpool). */
  answers(): Promise<boolean>;
  poolNames(): Promise<string[]>;
  /** The pool list the last `answers` that returned true read, until another command or a name check uses it up. */
  lastListed(): readonly string[] | undefined;
}

/** Time limits of the daemon's life cycle, in ms. */
export interface DaemonTimeouts {
  /** How long a started daemon may take to answer (default 15 s). */
  readonly readyTimeoutMs?: number | undefined;
  /** How long SIGTERM may take before SIGKILL (default 15 s), and how long to retry a start another daemon's lock refuses (default 30 s). */
  readonly stopTimeoutMs?: number | undefined;
  /** How long the daemon's own start (its fork and first listen) may take (default 30 s). */
  readonly startTimeoutMs?: number | undefined;
}

const sleep = (ms: number): Promise<void> => new Promise((done) => setTimeout(done, ms));

/**
 * Uses the daemon that answers, or starts one and waits until it answers. The session's `stop`
 * ends a daemon this call started, unless a pool is imported that it did not have at start and
 * that the caller does not name in `abandon`.
 */
export async function prepareDaemon(client: DaemonClient, timeouts: DaemonTimeouts = {}): Promise<ZfsSession> {
  const started = await startUnlessAnswering(client, timeouts);
  if (!started) return { started: false, stop: async () => ({ stopped: false, reason: 'zfs-fuse was already running' }) };
  const { pidDir, pidFile } = started;
  await waitUntilAnswering(client, pidDir, pidFile, timeouts.readyTimeoutMs ?? 15_000);
  const pid = Number((await readFile(pidFile, 'utf8')).trim());
  // pools the daemon imported by itself from its cache file are not ours to wait for
  const atStart = new Set(client.lastListed() ?? (await client.poolNames()));
  let stopped = false;
  const stop: ZfsSession['stop'] = async (stopOptions = {}) => {
    if (stopped) return { stopped: true };
    // another build may be using the daemon we started: never take its pools down
    const expected = new Set([...atStart, ...(stopOptions.abandon ?? [])]);
    const others = (await client.poolNames().catch(() => [])).filter((name) => !expected.has(name));
    if (others.length > 0) {
      return { stopped: false, reason: `zfs-fuse left running: pools still imported (${others.join(', ')})` };
    }
    // only the daemon the pid file names, and only while it is zfs-fuse (the file may be stale)
    const graceMs = timeouts.stopTimeoutMs ?? 15_000;
    const how = await stopZfsFuseProcess(pid, client.exec, graceMs);
    if (how === 'still-running') return { stopped: false, reason: `zfs-fuse (pid ${pid}) did not exit, even after SIGKILL` };
    stopped = true;
    await rm(pidDir, { recursive: true, force: true });
    if (how !== 'killed') return { stopped: true };
    return { stopped: true, reason: `killed the zfs-fuse daemon this build started (pid ${pid}): it did not exit within ${graceMs / 1000} s of SIGTERM` };
  };
  return { started: true, stop, pidFile };
}

/** Starts a daemon unless one answers; undefined when one did. */
async function startUnlessAnswering(client: DaemonClient, timeouts: DaemonTimeouts): Promise<{ pidDir: string; pidFile: string } | undefined> {
  // Another build's daemon may be shutting down and still hold the lock: retry until it is gone.
  const lockDeadline = Date.now() + (timeouts.stopTimeoutMs ?? 30_000);
  for (;;) {
    if (await client.answers()) return undefined;
    const pidDir = await mkdtemp(join(tmpdir(), 'zfs-fuse-'));
    const pidFile = join(pidDir, 'zfs-fuse.pid');
    try {
      // it forks, and the parent exits once the daemon is listening
      // no kstat mount: a killed daemon would leave /zfs-kstat mounted
      // not cut short by Ctrl-C: a start stopped after the fork leaves a daemon no pid file names;
      // so a start that hangs (a stuck /dev/fuse) has a time limit instead
      await client.exec(client.daemon, ['--pidfile', pidFile, '--no-kstat-mount'], { ignoreAbort: true, timeoutMs: timeouts.startTimeoutMs ?? 30_000 });
      return { pidDir, pidFile };
    } catch (error) {
      // a daemon that forked before its start failed (a time limit) is stopped, not left behind
      const stray = await pidIn(pidFile);
      if (stray > 0) await stopZfsFuseProcess(stray, client.exec, 0);
      await rm(pidDir, { recursive: true, force: true });
      if (!(error instanceof CommandError) || error.failure.spawnError) throw error;
      if (Date.now() > lockDeadline) {
        throw new Error(`zfs-fuse did not start (${error.message}); another zfs-fuse may hold /var/lock/zfs/zfs_lock, see the system log`);
      }
      await sleep(500);
    }
  }
}

/** Waits for a daemon just started to answer; one that does not is stopped, never left behind. */
async function waitUntilAnswering(client: DaemonClient, pidDir: string, pidFile: string, readyTimeoutMs: number): Promise<void> {
  const deadline = Date.now() + readyTimeoutMs;
  const abandon = async (error: Error): Promise<never> => {
    await stopZfsFuseProcess(await pidIn(pidFile), client.exec, 0);
    await rm(pidDir, { recursive: true, force: true });
    throw error;
  };
  for (;;) {
    let ready: boolean;
    try {
      ready = await client.answers();
    } catch (error) {
      // it started but hangs on its first answer
      return abandon(error as Error);
    }
    if (ready) return;
    if (Date.now() > deadline) return abandon(new Error(`zfs-fuse started but did not answer within ${readyTimeoutMs} ms`));
    await sleep(50);
  }
}

/**
 * What every zfs-fuse user on the host shares: the lock its requests take turns on, their time
 * limit, stopping the daemon's process, and the mounts it leaves when it dies. The driver, the sweep of
 * dead runs and the last build's daemon stop all reach zfs-fuse through these.
 */
import { readFile } from 'node:fs/promises';
import { createHostLock, type HostLock } from '../../../lib/execution/host-lock.ts';
import { readMountTable } from '../../../lib/execution/mount-table.ts';
import { processAlive, processName, signalProcess } from '../../../lib/execution/processes.ts';
import type { Exec } from '../../../lib/execution/types.ts';

/** The default limit for one zpool or zfs command: they answer in well under a second when the daemon is healthy. */
const DEFAULT_ZFS_COMMAND_TIMEOUT_S = 120;

/** The longest limit a timer can hold (2^31 - 1 ms, about 24 days). */
const MAX_ZFS_COMMAND_TIMEOUT_S = 2_147_483;

/**
 * The limit for one zpool or zfs command, in ms: `ZFS_IMAGE_ZFS_TIMEOUT` seconds (0 for none),
 * else {@link DEFAULT_ZFS_COMMAND_TIMEOUT_S}. Undefined means no limit.
 */
export function zfsCommandTimeoutMs(env: Readonly<Record<string, string | undefined>> = process.env): number | undefined {
  const raw = env['ZFS_IMAGE_ZFS_TIMEOUT']?.trim();
  const unset = raw === undefined || raw === '';
  const seconds = unset ? DEFAULT_ZFS_COMMAND_TIMEOUT_S : Number(raw);
  // decimal seconds only (Number() would also take 0x10 and 1e2); Node's timers hold at most 2^31 - 1 ms
  if ((!unset && !/^\d+(\.\d+)?$/.test(raw)) || seconds > MAX_ZFS_COMMAND_TIMEOUT_S) {
    throw new Error(`ZFS_IMAGE_ZFS_TIMEOUT: must be a number of seconds from 0 (no limit) to ${MAX_ZFS_COMMAND_TIMEOUT_S}, not "${raw}"`);
  }
  return seconds === 0 ? undefined : seconds * 1000;
}

/** {@link zfsCommandTimeoutMs}, or the default where the setting is bad (cleanup paths that run without the build's checks). */
export function zfsCommandTimeoutMsOrDefault(): number | undefined {
  try {
    return zfsCommandTimeoutMs();
  } catch {
    return DEFAULT_ZFS_COMMAND_TIMEOUT_S * 1000;
  }
}

/**
 * The host-wide lock every zpool and zfs command for zfs-fuse runs under. Two commands that
 * mount at once (two `zfs set mountpoint`, say) can deadlock the zfs-fuse 0.7 daemon for good:
 * both wait on a new FUSE mount it never initialises.
 */
const ZFS_FUSE_LOCK_FILE = '/run/nixos-zfs-image/zfs-fuse.lock';

/** Builds and shells using a ZFS daemon register here (one file per pid), so none stops it under another. */
export const ZFS_USERS_DIR = '/run/nixos-zfs-image/zfs-users';

let sharedLock: HostLock | undefined;

/** This process's hold on {@link ZFS_FUSE_LOCK_FILE}, shared so its own commands queue too. */
export function zfsFuseLock(): HostLock {
  sharedLock ??= createHostLock(ZFS_FUSE_LOCK_FILE);
  return sharedLock;
}

/** How {@link zfsFuseRequests} runs each command; every field has the host-wide default. */
export interface ZfsFuseRequestOptions {
  readonly lock?: HostLock;
  /** Undefined for no limit; default {@link zfsCommandTimeoutMsOrDefault}. */
  readonly timeoutMs?: number | undefined;
  /** Called once the command's turn on the lock has come, before it runs; throws to refuse it. */
  readonly onTurn?: (file: string, args: readonly string[]) => void;
}

/**
 * `exec` for commands that ask the zfs-fuse daemon: each one waits its turn on the host lock
 * and is stopped after the time limit, so a hung daemon fails the command instead of freezing it.
 */
export function zfsFuseRequests(exec: Exec, options: ZfsFuseRequestOptions = {}): Exec {
  const lock = options.lock ?? zfsFuseLock();
  const timeoutMs = 'timeoutMs' in options ? options.timeoutMs : zfsCommandTimeoutMsOrDefault();
  return (file, args, execOptions) =>
    lock.hold(() => {
      options.onTurn?.(file, args);
      return exec(file, args, { ...execOptions, ...(timeoutMs === undefined ? {} : { timeoutMs }) });
    });
}

/** The pid a pid file holds; NaN when it is missing or unreadable. */
export async function pidIn(pidFile: string): Promise<number> {
  return Number((await readFile(pidFile, 'utf8').catch(() => '')).trim());
}

/** Whether `pid` is a live zfs-fuse process: a pid file may be stale, and its pid reused. */
export async function isZfsFuseProcess(pid: number): Promise<boolean> {
  if (!(Number.isInteger(pid) && pid > 0)) return false;
  return (await processName(pid)) === 'zfs-fuse' && (await processAlive(pid));
}

/** How {@link stopZfsFuseProcess} went. */
export type DaemonStop = 'not-running' | 'exited' | 'killed' | 'still-running';

/**
 * Stops the zfs-fuse daemon `pid`: SIGTERM (it waits for its worker threads, about 5 s, then
 * unmounts and exits), then after `graceMs` (0: at once) SIGKILL, and its dead mounts detached.
 * Anything that is not a live zfs-fuse is left alone.
 */
export async function stopZfsFuseProcess(pid: number, exec: Exec, graceMs: number): Promise<DaemonStop> {
  if (!(await isZfsFuseProcess(pid))) return 'not-running';
  const exits = async (withinMs: number): Promise<boolean> => {
    const deadline = Date.now() + withinMs;
    while (await processAlive(pid)) {
      if (Date.now() > deadline) return false;
      await new Promise((done) => setTimeout(done, 100));
    }
    return true;
  };
  if (graceMs > 0) {
    signalProcess(pid, 'SIGTERM');
    if (await exits(graceMs)) return 'exited';
  }
  signalProcess(pid, 'SIGKILL');
  const gone = await exits(10_000);
  // a killed daemon leaves dead FUSE mounts ("transport endpoint is not connected")
  await detachDeadMounts(exec);
  return gone ? 'killed' : 'still-running';
}

/** The type the kernel lists zfs-fuse mounts under; their source is the dataset name. */
export const ZFS_FUSE_FS_TYPE = 'fuse.zfs';

/** Lazily unmounts every zfs-fuse mount; only called once the one zfs-fuse daemon of the host is dead. */
export async function detachDeadMounts(exec: Exec): Promise<void> {
  const points = (await readMountTable())
    .filter((entry) => entry.fsType === ZFS_FUSE_FS_TYPE)
    .map((entry) => entry.target)
    .sort((a, b) => b.length - a.length);
  for (const point of points) await exec('umount', ['-l', point]).catch(() => undefined);
}

/**
 * The zfs-fuse driver: userspace ZFS (Debian's zfs-fuse 0.7, pool version 23)
 * for machines without the kernel module. The pool lives directly on the raw
 * file; datasets are mounted through their mountpoint property under the
 * pool's altroot and set back before export; the daemon is started on demand.
 */
import { access, symlink } from 'node:fs/promises';
import { constants, existsSync } from 'node:fs';
import { basename, join, resolve } from 'node:path';
import { createExec, formatCommand } from '../../../lib/execution/exec.ts';
import type { HostLock } from '../../../lib/execution/host-lock.ts';
import { CommandError } from '../../../lib/execution/command-error.ts';
import { isAlive } from '../../../lib/caching/lock.ts';
import type { Exec } from '../../../lib/execution/types.ts';
import { POOL_NAME, inCoreName, makeTempDir, mayHaveFinished, releaseExecOptions, removeTempDir, UNDO } from './driver.ts';
import { zfsCreateArgs, zpoolCreateArgs } from '../generators.ts';
import type { CreatePoolOptions, ImportPoolOptions, PoolHandle, ReleaseOptions, ZfsDriver, ZfsProperties, ZfsSession } from './driver.ts';
import { prepareDaemon } from './zfs-fuse-daemon.ts';
import { ZFS_USERS_DIR, zfsCommandTimeoutMs, zfsFuseLock, zfsFuseRequests } from './zfs-fuse-host.ts';
import { mountDatasets, unmountAll, unmountEverything, type ZfsFuseCommands } from './zfs-fuse-mounts.ts';
import { adaptPropertiesForZfsFuse } from './zfs-fuse-properties.ts';

/** How to reach zfs-fuse; every field has a working default on Debian. */
export interface ZfsFuseOptions {
  readonly exec?: Exec;
  /** The daemon binary (default `zfs-fuse` from PATH). */
  readonly daemon?: string;
  readonly zpool?: string;
  readonly zfs?: string;
  /** How long to wait for a started daemon to answer (default 15 s). */
  readonly readyTimeoutMs?: number;
  /** How long SIGTERM may take before SIGKILL (default 15 s; it takes about 5 s), and how long a start refused by another daemon's lock is retried (default 30 s). */
  readonly stopTimeoutMs?: number;
  /** How long the daemon's own start (its fork and first listen) may take (default 30 s); Ctrl-C does not cut it short. */
  readonly startTimeoutMs?: number;
  /** Serialises zpool and zfs commands across builds (default: the host lock, {@link zfsFuseLock}). */
  readonly lock?: HostLock;
  /** How long a zpool or zfs command may go unanswered before the daemon counts as hung (default {@link zfsCommandTimeoutMs}). */
  readonly commandTimeoutMs?: number;
}

/**
 * Set once a command of this process found the daemon hung: every later command fails at once
 * (a cleanup would otherwise wait out the limit once per command). A new daemon check clears it.
 */
let hungDaemon: Error | undefined;

/** What to say when the daemon did not answer `command`. */
function hungDaemonError(command: string, limitMs: number): Error {
  return new Error(
    `zfs-fuse did not answer \`${command}\` within ${limitMs / 1000} s: the daemon looks hung (zfs-fuse 0.7 can deadlock). ` +
      'The build stops here; finished stages stay in the cache, and a daemon this build started is stopped when it ends. ' +
      'Otherwise recover by hand: pkill -KILL -x zfs-fuse, then `umount -l` every fuse.zfs mount point that `grep fuse.zfs /proc/mounts` lists, ' +
      'then rerun the build. ZFS_IMAGE_ZFS_TIMEOUT=<seconds> changes the limit.',
  );
}

/** Creates the zfs-fuse driver. */
export function createZfsFuseDriver(options: ZfsFuseOptions = {}): ZfsDriver {
  const run = options.exec ?? createExec();
  const daemon = options.daemon ?? 'zfs-fuse';
  const zpool = options.zpool ?? 'zpool';
  const zfs = options.zfs ?? 'zfs';
  const refuseIfHung = (file: string, args: readonly string[]): void => {
    if (hungDaemon) throw new Error(`zfs-fuse is not answering, so \`${formatCommand(file, args)}\` was not run (${hungDaemon.message})`);
  };
  // one daemon request at a time on the whole host, each with a time limit; the daemon itself is started unlocked.
  // Checked again once a command's turn comes: the one before it in the queue may have found the daemon hung.
  const timeoutMs = options.commandTimeoutMs ?? zfsCommandTimeoutMs();
  const request = zfsFuseRequests(run, { lock: options.lock ?? zfsFuseLock(), timeoutMs, onTurn: refuseIfHung });
  // The pool list the daemon check just read, for the name check that follows it: saves a round
  // trip; any other command clears it (zpool create and import refuse a taken name anyway).
  let justListed: string[] | undefined;
  const exec: Exec = async (file, args, execOptions) => {
    justListed = undefined;
    if (file !== zpool && file !== zfs) return run(file, args, execOptions);
    refuseIfHung(file, args);
    try {
      return await request(file, args, execOptions);
    } catch (error) {
      if (error instanceof CommandError && error.failure.timedOutAfterMs !== undefined) {
        hungDaemon = hungDaemonError(error.failure.command, error.failure.timedOutAfterMs);
        throw hungDaemon;
      }
      throw error;
    }
  };

  const poolNames = async (): Promise<string[]> => {
    const { stdout } = await exec(zpool, ['list', '-H', '-o', 'name'], { quiet: true });
    return stdout.split('\n').filter((line) => line.length > 0);
  };

  // the daemon answers when `zpool list` succeeds; it fails with "connect: ..." otherwise
  const answers = async (): Promise<boolean> => {
    try {
      justListed = await poolNames();
      return true;
    } catch (error) {
      if (error instanceof CommandError && error.failure.spawnError) {
        throw new Error(`zfs-fuse's zpool cannot be run (${error.failure.spawnError}); install zfs-fuse (apt-get install zfs-fuse)`);
      }
      // a daemon that is there but hung must not be mistaken for none: starting another would fail on its lock
      if (error === hungDaemon) throw error;
      // Ctrl-C is no answer either way: waiting on for the daemon would hold the build for its start-up limit
      if ((error instanceof CommandError && error.failure.aborted) || (error as Error).name === 'AbortError') throw error;
      return false;
    }
  };

  const isImported = async (name: string): Promise<boolean> => {
    const names = justListed ?? (await poolNames());
    justListed = undefined;
    return names.includes(name);
  };

  // zfs-fuse has no temporary pool names: a pool of the same name on the host cannot be avoided
  const refuseIfImported = async (pool: string): Promise<void> => {
    if (!POOL_NAME.test(pool)) throw new Error(`invalid pool name '${pool}'`);
    if (await isImported(pool)) {
      const holder = await heldByRun(pool);
      if (holder) {
        // exporting it would pull it out from under that run (an open shell's mounted copy)
        throw new Error(
          `a pool named '${pool}' is already imported on this host by another run of this tool (pid ${holder.pid}, ${holder.what}, ` +
            `root ${holder.root}), and zfs-fuse cannot import under a temporary name; end that run first, or choose another rootPoolName`,
        );
      }
      throw new Error(
        `a pool named '${pool}' is already imported on this host, and zfs-fuse cannot import under a temporary name; ` +
          `export it (zpool export ${pool}) or choose another rootPoolName`,
      );
    }
  };

  /** The live run of this tool whose working folder the pool is imported into (its altroot), if any. */
  const heldByRun = async (pool: string): Promise<{ pid: number; what: string; root: string } | undefined> => {
    // zfs-fuse's `zpool get` has no -H or -o; its `zpool list` has both
    const listed = (await exec(zpool, ['list', '-H', '-o', 'name,altroot'], { quiet: true }).catch(() => undefined))?.stdout ?? '';
    const root = listed.split('\n').find((line) => line.startsWith(`${pool}\t`))?.slice(pool.length + 1) ?? '';
    // a run's folders are staging/<pid>.<task>.<suffix> and work/<pid>.<task or shell>.<suffix>; the
    // last such segment is the cache's own (a cache may itself lie under a folder called work)
    const match = /^.*\/(?:staging|work)\/(\d+)\.([a-z][\w:-]*)\.[^/]+\//.exec(`${root}/`);
    // alive and registered as a ZFS user: a run of this tool, not a process that reused a dead run's pid
    if (!match || !isAlive(Number(match[1])) || !existsSync(join(ZFS_USERS_DIR, match[1]!))) return undefined;
    return { pid: Number(match[1]), what: match[2] === 'shell' ? 'a shell' : 'a build', root };
  };

  // A create or import stopped part way (Ctrl-C, its time limit) may have finished in the daemon:
  // export the pool, even after Ctrl-C. Only then: one that failed with an error imported nothing,
  // and the name may be another build's that took it meanwhile.
  const abandon = async (pool: string, error: unknown): Promise<void> => {
    if (!mayHaveFinished(error)) return;
    const listed = await exec(zpool, ['list', '-H', '-o', 'name'], UNDO).catch(() => undefined);
    if (listed?.stdout.split('\n').includes(pool)) await exec(zpool, ['export', '-f', pool], UNDO).catch(() => undefined);
  };

  const commands: ZfsFuseCommands = { exec, zfs };

  const exportPool = async (handle: PoolHandle, release: ReleaseOptions = {}): Promise<void> => {
    await exec(zpool, ['export', ...(release.force ? ['-f'] : []), handle.name], releaseExecOptions(release));
    for (const dir of handle.tempDirs) await removeTempDir(dir);
  };

  const prepare = async (): Promise<ZfsSession> => {
    // a fresh check: the daemon may have been restarted since a command found it hung
    hungDaemon = undefined;
    try {
      await access('/dev/fuse', constants.R_OK | constants.W_OK);
    } catch {
      throw new Error('zfs-fuse needs /dev/fuse (modprobe fuse; in a container, pass the device, e.g. --device /dev/fuse)');
    }
    return prepareDaemon({ exec, daemon, answers, poolNames, lastListed: () => justListed }, options);
  };

  return {
    name: 'zfs-fuse',
    prepare,
    adaptProperties: adaptPropertiesForZfsFuse,
    isImported,

    async createPool(create: CreatePoolOptions): Promise<PoolHandle> {
      await refuseIfImported(create.pool);
      const vdev = resolve(create.vdev);
      const tempDirs = create.root === undefined ? [await makeTempDir(vdev, '.zfs-root-')] : [];
      const root = create.root ?? (tempDirs[0] as string);
      try {
        // with -R, zfs-fuse ignores -O mountpoint and mounts the root dataset at the altroot: pass it as -m
        const { mountpoint = `/${create.pool}`, ...filesystemProperties } = create.filesystemProperties;
        // -R: a non-legacy mountpoint lands under a temporary root, never on the host (and no cache file entry)
        await exec(zpool, zpoolCreateArgs({ ...create, vdev, altroot: root, mountpoint, filesystemProperties }));
      } catch (error) {
        await abandon(create.pool, error);
        for (const dir of tempDirs) await removeTempDir(dir).catch(() => undefined);
        throw error;
      }
      return { driver: 'zfs-fuse', pool: create.pool, name: create.pool, vdev, root, tempDirs };
    },

    async createDataset(handle: PoolHandle, dataset: string, properties: ZfsProperties): Promise<void> {
      await exec(zfs, zfsCreateArgs(inCoreName(handle, dataset), properties));
    },

    async importPool(imp: ImportPoolOptions): Promise<PoolHandle> {
      await refuseIfImported(imp.pool);
      const vdev = resolve(imp.vdev);
      // -d scans a whole folder and, of several copies of one pool, sees only one: give it a folder with only this file
      const linkDir = await makeTempDir(vdev, '.zfs-vdev-');
      const handle: PoolHandle = { driver: 'zfs-fuse', pool: imp.pool, name: imp.pool, vdev, root: imp.root, tempDirs: [linkDir] };
      try {
        await symlink(vdev, join(linkDir, basename(vdev)));
        await exec(zpool, ['import', '-R', imp.root, '-d', linkDir, imp.pool]);
      } catch (error) {
        await abandon(imp.pool, error);
        await removeTempDir(linkDir).catch(() => undefined);
        throw error;
      }
      try {
        // zfs-fuse import has no -N: unmount what a non-legacy mountpoint mounted, as openzfs would not mount it
        await unmountEverything(commands, imp.pool, imp.root, false, []);
      } catch (error) {
        await exportPool(handle, { force: true }).catch(() => undefined);
        throw error;
      }
      return handle;
    },

    mountDatasets: (handle, mounts) => mountDatasets(commands, handle, mounts),
    unmountAll: (handle, state, release) => unmountAll(commands, handle, state, release),
    exportPool,

    watch(onHung: (error: Error) => void): () => void {
      if (timeoutMs === undefined) return () => undefined;
      // often enough that a hang is found within about 1.25 limits; rarely enough to cost nothing
      const everyMs = Math.min(30_000, timeoutMs / 4);
      let watching = true;
      let timer: NodeJS.Timeout | undefined;
      const ask = async (): Promise<void> => {
        if (!watching) return;
        await poolNames().catch(() => undefined);
        if (!watching) return;
        if (hungDaemon) {
          watching = false;
          onHung(hungDaemon);
          return;
        }
        timer = setTimeout(() => void ask(), everyMs);
        timer.unref();
      };
      timer = setTimeout(() => void ask(), everyMs);
      timer.unref();
      return () => {
        watching = false;
        clearTimeout(timer);
      };
    },
  };
}

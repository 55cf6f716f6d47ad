/**
 * The zfs-fuse driver: userspace ZFS (Debian's zfs-fuse 0.7, pool version 23)
 * for machines without the kernel module. The pool lives directly on the raw
 * file; datasets are mounted through their mountpoint property under the
 * pool's altroot and set back before export; the daemon is started on demand.
 */
import { access, mkdtemp, readFile, rm, symlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { constants, existsSync } from 'node:fs';
import { basename, join, resolve } from 'node:path';
import { createExec, formatCommand } from '../../../lib/execution/exec.ts';
import type { HostLock } from '../../../lib/execution/host-lock.ts';
import { CommandError } from '../../../lib/execution/command-error.ts';
import { isAlive } from '../../../lib/caching/lock.ts';
import { kernelPath, mountsAtOrBelow, readMountTable, type MountEntry } from '../../../lib/execution/mount-table.ts';
import type { Exec } from '../../../lib/execution/types.ts';
import {
  POOL_NAME,
  hostPath,
  inCoreName,
  makeTempDir,
  mayHaveFinished,
  releaseExecOptions,
  removeTempDir,
  UNDO,
} from './driver.ts';
import { compareMounts, inMountOrder, zfsCreateArgs, zpoolCreateArgs } from '../generators.ts';
import type {
  CreatePoolOptions,
  DatasetMount,
  ImportPoolOptions,
  MountState,
  PoolHandle,
  ReleaseOptions,
  ZfsDriver,
  ZfsProperties,
  ZfsSession,
} from './driver.ts';
import {
  ZFS_FUSE_FS_TYPE,
  ZFS_USERS_DIR,
  pidIn,
  stopZfsFuseProcess,
  zfsCommandTimeoutMs,
  zfsFuseLock,
  zfsFuseRequests,
} from './zfs-fuse-host.ts';
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
  /** How long SIGTERM may take before SIGKILL (default 15 s; it takes about 5 s). */
  readonly stopTimeoutMs?: number;
  /** How long the daemon's own start (its fork and first listen) may take; Ctrl-C does not cut it short. */
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

/**
 * The pool's datasets mounted on this host, from the kernel's mount table: what
 * really is mounted where (zfs-fuse's `mounted` property can disagree), at no
 * daemon round trip.
 */
async function mountedDatasets(pool: string, root: string): Promise<MountEntry[]> {
  // only under this pool's root: a dead earlier daemon may have left mounts of a pool of the same name elsewhere
  return mountsAtOrBelow(await readMountTable(), await kernelPath(root)).filter(
    (entry) => entry.fsType === ZFS_FUSE_FS_TYPE && (entry.source === pool || entry.source.startsWith(`${pool}/`)),
  );
}

const sleep = (ms: number): Promise<void> => new Promise((done) => setTimeout(done, ms));

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

  // unmounts every mounted dataset of the pool, deepest mountpoint first
  const unmountEverything = async (name: string, root: string, force: boolean, errors: unknown[]): Promise<void> => {
    const mounted = (await mountedDatasets(name, root)).sort((a, b) => compareMounts(b.target, a.target));
    for (const entry of mounted) {
      try {
        // no -f: a forced FUSE unmount detaches the mount but leaves the pool busy for export
        await exec(zfs, ['umount', entry.source], releaseExecOptions({ force }));
      } catch (error) {
        if (!force) throw error;
        errors.push(error);
      }
    }
  };

  const unmountAll = async (handle: PoolHandle, state: MountState, release: ReleaseOptions = {}): Promise<void> => {
    const force = release.force ?? false;
    const errors: unknown[] = [];
    await unmountEverything(handle.name, handle.root, force, errors);
    // parents first: a child set back to inherit must not inherit a parent's temporary mountpoint
    const depth = (dataset: string): number => dataset.split('/').length;
    const restore = [...state.restore].sort((a, b) => depth(a.dataset) - depth(b.dataset));
    for (const entry of restore) {
      try {
        if (entry.mountpoint === null) await exec(zfs, ['inherit', 'mountpoint', entry.dataset], releaseExecOptions(release));
        else await exec(zfs, ['set', `mountpoint=${entry.mountpoint}`, entry.dataset], releaseExecOptions(release));
      } catch (error) {
        if (!force) throw error;
        errors.push(error);
      }
    }
    // restoring an inherited non-legacy mountpoint can mount again
    await unmountEverything(handle.name, handle.root, force, errors);
    if (errors.length > 0) throw errors[0];
  };

  const mountDatasets = async (handle: PoolHandle, mounts: readonly DatasetMount[]): Promise<MountState> => {
    const ordered = inMountOrder(mounts).map((entry) => ({
      dataset: inCoreName(handle, entry.dataset),
      mount: entry.mount,
      path: hostPath(handle.root, entry.mount),
    }));
    // one query for both: each extra zfs command costs a round trip to the daemon
    const { stdout } = await exec(zfs, ['get', '-H', '-o', 'name,property,value,source', '-r', 'mountpoint,canmount', handle.name], { quiet: true });
    const current = new Map<string, { value: string; local: boolean }>();
    const canmount = new Map<string, string>();
    for (const line of stdout.split('\n')) {
      const [dataset, property, value, source] = line.split('\t');
      // snapshots and volumes have no mountpoint ('-')
      if (!dataset || dataset.includes('@') || value === undefined || value === '-' || source === undefined) continue;
      if (property === 'canmount') canmount.set(dataset, value);
      else current.set(dataset, { value, local: source === 'local' });
    }
    // zfs shows local paths with the altroot in front; the stored value has none
    const stored = (value: string): string => {
      const root = handle.root.replace(/\/+$/, '');
      if (value === root) return '/';
      return value.startsWith(`${root}/`) ? value.slice(root.length) : value;
    };
    const requested = new Set(ordered.map((entry) => entry.dataset));
    const restore: { dataset: string; mountpoint: string | null }[] = [];
    const mounted: { dataset: string; path: string }[] = [];
    try {
      // datasets without a mount would inherit a mounted ancestor's path and mount too (openzfs would not mount them): pin them
      for (const [dataset, info] of current) {
        if (requested.has(dataset) || info.local) continue;
        if (![...requested].some((parent) => dataset.startsWith(`${parent}/`))) continue;
        restore.push({ dataset, mountpoint: null });
        await exec(zfs, ['set', 'mountpoint=legacy', dataset]);
      }
      for (const entry of ordered) {
        const info = current.get(entry.dataset);
        if (!info) throw new Error(`dataset '${entry.dataset}' does not exist in pool '${handle.name}'`);
        restore.push({ dataset: entry.dataset, mountpoint: info.local ? stored(info.value) : null });
        // with the altroot set, the mountpoint is the path inside the image
        await exec(zfs, ['set', `mountpoint=${entry.mount}`, entry.dataset]);
        // canmount=on mounts on set; noauto does not
        if ((canmount.get(entry.dataset) ?? 'on') !== 'on') await exec(zfs, ['mount', entry.dataset]);
        mounted.push({ dataset: entry.dataset, path: entry.path });
      }
      // Never install into the host folder under a dataset that did not mount there.
      const table = await mountedDatasets(handle.name, handle.root);
      const root = await kernelPath(handle.root);
      const missing = ordered
        .filter((entry) => !table.some((mount) => mount.source === entry.dataset && mount.target === hostPath(root, entry.mount)))
        .map((entry) => `${entry.dataset} (at ${entry.path})`);
      if (missing.length > 0) throw new Error(`zfs-fuse did not mount ${missing.join(', ')} after setting the mountpoint`);
    } catch (error) {
      await unmountAll(handle, { mounted, restore }, { force: true }).catch(() => undefined);
      throw error;
    }
    return { mounted, restore };
  };

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
    // Another build's daemon may be shutting down and still hold the lock: retry until it is gone.
    const lockDeadline = Date.now() + (options.stopTimeoutMs ?? 30_000);
    let pidDir: string;
    let pidFile: string;
    for (;;) {
      if (await answers()) {
        return { started: false, stop: async () => ({ stopped: false, reason: 'zfs-fuse was already running' }) };
      }
      pidDir = await mkdtemp(join(tmpdir(), 'zfs-fuse-'));
      pidFile = join(pidDir, 'zfs-fuse.pid');
      try {
        // it forks, and the parent exits once the daemon is listening
        // no kstat mount: a killed daemon would leave /zfs-kstat mounted
        // not cut short by Ctrl-C: a start stopped after the fork leaves a daemon no pid file names;
        // so a start that hangs (a stuck /dev/fuse) has a time limit instead
        await exec(daemon, ['--pidfile', pidFile, '--no-kstat-mount'], { ignoreAbort: true, timeoutMs: options.startTimeoutMs ?? 30_000 });
        break;
      } catch (error) {
        // a daemon that forked before its start failed (a time limit) is stopped, not left behind
        const stray = await pidIn(pidFile);
        if (stray > 0) await stopZfsFuseProcess(stray, exec, 0);
        await rm(pidDir, { recursive: true, force: true });
        if (!(error instanceof CommandError) || error.failure.spawnError) throw error;
        if (Date.now() > lockDeadline) {
          throw new Error(`zfs-fuse did not start (${error.message}); another zfs-fuse may hold /var/lock/zfs/zfs_lock, see the system log`);
        }
        await sleep(500);
      }
    }
    const deadline = Date.now() + (options.readyTimeoutMs ?? 15_000);
    // do not leave a daemon nobody will stop
    const abandon = async (error: Error): Promise<never> => {
      const stuck = await pidIn(pidFile);
      await stopZfsFuseProcess(stuck, exec, 0);
      await rm(pidDir, { recursive: true, force: true });
      throw error;
    };
    for (;;) {
      let ready: boolean;
      try {
        ready = await answers();
      } catch (error) {
        // it started but hangs on its first answer
        return abandon(error as Error);
      }
      if (ready) break;
      if (Date.now() > deadline) return abandon(new Error(`zfs-fuse started but did not answer within ${options.readyTimeoutMs ?? 15_000} ms`));
      await sleep(50);
    }
    const pid = Number((await readFile(pidFile, 'utf8')).trim());
    // pools the daemon imported by itself from its cache file are not ours to wait for
    const atStart = new Set(justListed ?? (await poolNames()));
    let stopped = false;
    const stop: ZfsSession['stop'] = async (stopOptions = {}) => {
      if (stopped) return { stopped: true };
      // another build may be using the daemon we started: never take its pools down
      const expected = new Set([...atStart, ...(stopOptions.abandon ?? [])]);
      const others = (await poolNames().catch(() => [])).filter((name) => !expected.has(name));
      if (others.length > 0) {
        return { stopped: false, reason: `zfs-fuse left running: pools still imported (${others.join(', ')})` };
      }
      // only the daemon the pid file names, and only while it is zfs-fuse (the file may be stale)
      const graceMs = options.stopTimeoutMs ?? 15_000;
      const how = await stopZfsFuseProcess(pid, exec, graceMs);
      if (how === 'still-running') return { stopped: false, reason: `zfs-fuse (pid ${pid}) did not exit, even after SIGKILL` };
      stopped = true;
      await rm(pidDir, { recursive: true, force: true });
      if (how !== 'killed') return { stopped: true };
      return { stopped: true, reason: `killed the zfs-fuse daemon this build started (pid ${pid}): it did not exit within ${graceMs / 1000} s of SIGTERM` };
    };
    return { started: true, stop, pidFile };
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
        await unmountEverything(imp.pool, imp.root, false, []);
      } catch (error) {
        await exportPool(handle, { force: true }).catch(() => undefined);
        throw error;
      }
      return handle;
    },

    mountDatasets,
    unmountAll,
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

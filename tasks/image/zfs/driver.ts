import { mkdtemp, rm } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { CommandError } from '../../../lib/execution/command-error.ts';
import { mountsUnder } from '../../../lib/execution/mount-table.ts';
import type { ExecOptions } from '../../../lib/execution/types.ts';

/**
 * The contract between the image stages and a ZFS implementation. Two drivers
 * implement it: `openzfs` (the kernel module) and `zfs-fuse` (userspace, pool
 * version 23). Every command is run as an argv through an `Exec`, never a shell.
 */

/** Which ZFS implementation a driver talks to. */
export type ZfsDriverName = 'openzfs' | 'zfs-fuse';

/** ZFS properties as `name → value`, passed as `-o name=value`. */
export type ZfsProperties = Readonly<Record<string, string>>;

/** The properties an image asks for: `-o` and `-O` at pool creation, then per dataset. */
export interface PropertyRequest {
  /** Pool properties (`zpool create -o`). */
  readonly pool: ZfsProperties;
  /** Root file system properties (`zpool create -O`), inherited by the datasets. */
  readonly filesystem: ZfsProperties;
  /** Per dataset (on-disk name, e.g. `tank/root`): `zfs create -o`. */
  readonly datasets: Readonly<Record<string, ZfsProperties>>;
}

/** The config's default properties; a requested property equal to its default was not asked for by the user. */
export interface PropertyDefaults {
  readonly pool: ZfsProperties;
  readonly filesystem: ZfsProperties;
}

/** What a driver will actually set, and what it dropped or refuses. */
export interface AdaptedProperties extends PropertyRequest {
  /** Defaults this driver cannot set and dropped: the image differs from an OpenZFS build. */
  readonly warnings: readonly string[];
  /** Properties the user asked for that this driver cannot set; the build must not start if any. */
  readonly refused: readonly string[];
}

/** What the driver sets, without its remarks: what the pool is keyed on and image-info.json records. */
export function propertiesSet(adapted: AdaptedProperties): PropertyRequest {
  const { warnings: _warnings, refused: _refused, ...set } = adapted;
  return set;
}

/** A pool imported (or just created) by a driver. Plain data, so a later stage can release it. */
export interface PoolHandle {
  readonly driver: ZfsDriverName;
  /** The name written on disk (the config's `rootPoolName`). */
  readonly pool: string;
  /** The name the host knows it by: a temporary name for openzfs, `pool` for zfs-fuse. */
  readonly name: string;
  /** Absolute path of the raw disk file. */
  readonly vdev: string;
  /** The pool's altroot: any mount of the pool lands under it. */
  readonly root: string;
  /** The loop device the file is attached to (openzfs). */
  readonly device?: string | undefined;
  /** Temporary folders the driver made for this pool, removed at export. */
  readonly tempDirs: readonly string[];
}

/** A dataset to mount, by its on-disk name, at an absolute path inside the image. */
export interface DatasetMount {
  readonly dataset: string;
  readonly mount: string;
}

/** What `mountDatasets` did, so that `unmountAll` can undo it. Plain data. */
export interface MountState {
  /** Mounted datasets (in-core names) with their host paths, in mount order. */
  readonly mounted: readonly { readonly dataset: string; readonly path: string }[];
  /** Mountpoint properties changed to mount (zfs-fuse): `null` means `zfs inherit`. */
  readonly restore: readonly { readonly dataset: string; readonly mountpoint: string | null }[];
}

/** A running ZFS service for the duration of a build. */
export interface ZfsSession {
  /** True when this session started the zfs-fuse daemon (and so will stop it). */
  readonly started: boolean;
  /** The started daemon's pid file, alone in a temporary folder (so whoever stops it can remove the folder). */
  readonly pidFile?: string;
  /**
   * Stops what `prepare` started. A daemon that holds pools it did not hold at
   * start (another build's, or ours not exported) is left running and the reason
   * returned; `abandon` names pools of this build that may go down with it. A
   * `reason` beside `stopped: true` says what went wrong on the way (it had to be killed).
   */
  stop(options?: { readonly abandon?: readonly string[] }): Promise<{ readonly stopped: boolean; readonly reason?: string }>;
}

/** Options for creating a pool on a raw file. */
export interface CreatePoolOptions {
  /** The on-disk pool name. */
  readonly pool: string;
  /** The raw file that becomes the pool's only vdev. */
  readonly vdev: string;
  readonly poolProperties: ZfsProperties;
  readonly filesystemProperties: ZfsProperties;
  /** altroot during creation; a private temporary folder when absent. */
  readonly root?: string;
}

/** Options for importing a pool from a raw file. */
export interface ImportPoolOptions {
  readonly pool: string;
  readonly vdev: string;
  /** The temporary root the datasets will be mounted under (the pool's altroot). */
  readonly root: string;
}

/** Options for releasing a pool after a failure. */
export interface ReleaseOptions {
  /**
   * Cleanup after a failure: runs even after Ctrl-C, unmounting keeps going past errors (throwing
   * the first at the end), and the export is `zpool export -f`. A failed export still stops the
   * release: the pool's disk and folders must stay while it is imported.
   */
  readonly force?: boolean;
}

/** What an image build needs from a ZFS implementation. */
export interface ZfsDriver {
  readonly name: ZfsDriverName;
  /** Makes ZFS usable (zfs-fuse: starts the daemon when none runs). */
  prepare(): Promise<ZfsSession>;
  /** Checks and adapts the requested properties to what this driver can set; pure, no commands. */
  adaptProperties(request: PropertyRequest, defaults: PropertyDefaults): AdaptedProperties;
  /** Whether a pool of this in-core name is imported on the host. */
  isImported(name: string): Promise<boolean>;
  /** `zpool create` on the file; the pool stays imported until `exportPool`. */
  createPool(options: CreatePoolOptions): Promise<PoolHandle>;
  /** `zfs create -p` with properties; `dataset` is the on-disk name (`tank/root`). */
  createDataset(handle: PoolHandle, dataset: string, properties: ZfsProperties): Promise<void>;
  /** Imports the pool from this file alone (never another copy of it), mounting nothing. */
  importPool(options: ImportPoolOptions): Promise<PoolHandle>;
  /** Mounts the datasets under `handle.root`, shortest mount path first. */
  mountDatasets(handle: PoolHandle, mounts: readonly DatasetMount[]): Promise<MountState>;
  /** Unmounts everything of the pool, longest path first, and undoes what mounting changed. */
  unmountAll(handle: PoolHandle, state: MountState, options?: ReleaseOptions): Promise<void>;
  /** `zpool export`, then releases the loop device and temporary folders. */
  exportPool(handle: PoolHandle, options?: ReleaseOptions): Promise<void>;
  /**
   * For services that can hang (zfs-fuse): asks it at intervals whether it still answers, and
   * calls `onHung` once when it does not. Returns a function that stops watching.
   */
  watch?(onHung: (error: Error) => void): () => void;
}

/** Pool-name rules shared by both drivers (also used for temporary names). */
export const POOL_NAME = /^[A-Za-z][A-Za-z0-9_.:-]*$/;

/** Maps an on-disk dataset name (`tank/root`) to the in-core one (`tank-tmp1/root`). */
export function inCoreName(handle: Pick<PoolHandle, 'pool' | 'name'>, dataset: string): string {
  if (dataset === handle.pool) return handle.name;
  if (dataset.startsWith(`${handle.pool}/`)) return handle.name + dataset.slice(handle.pool.length);
  throw new Error(`dataset '${dataset}' is not in pool '${handle.pool}'`);
}


/** Host path of an image path under a root folder (`/` is the root itself). */
export function hostPath(root: string, mount: string): string {
  return mount === '/' ? root : root.replace(/\/+$/, '') + mount;
}

/**
 * Makes a private temporary folder for a driver (vdev links, an altroot) beside
 * the disk file, so that a dead run's leftovers are swept with its working folder.
 */
export function makeTempDir(vdev: string, prefix: string): Promise<string> {
  return mkdtemp(join(dirname(vdev), prefix));
}

/** Removes a driver's temporary folder, unless something is still mounted in it (that would delete image data). */
export async function removeTempDir(dir: string): Promise<void> {
  if ((await mountsUnder(dir)).length > 0) throw new Error(`not removing ${dir}: a file system is still mounted under it`);
  await rm(dir, { recursive: true, force: true });
}

/** Options for a command that undoes a failed or interrupted step: it runs even after Ctrl-C. */
export const UNDO: ExecOptions = { ignoreAbort: true, quiet: true };

/** Exec options for a release: a forced one (cleanup after a failure) runs even after Ctrl-C. */
export const releaseExecOptions = (release: ReleaseOptions): ExecOptions => (release.force ? { ignoreAbort: true } : {});

/**
 * Whether a failed command may still have done its work: it was stopped (Ctrl-C, its time limit,
 * a signal) rather than exiting with an error, so a `zpool import` may have finished in the kernel.
 */
export function mayHaveFinished(error: unknown): boolean {
  if (!(error instanceof CommandError)) return false;
  const { aborted, timedOutAfterMs, signal } = error.failure;
  return aborted === true || timedOutAfterMs !== undefined || signal !== undefined;
}

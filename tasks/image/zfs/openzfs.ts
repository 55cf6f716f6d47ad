/**
 * The openzfs driver: the kernel module (NixOS with ZFS, Ubuntu's zfsutils-linux).
 * The raw file is attached as a loop device so ZFS labels it as a whole disk
 * (GPT partitions 1 and 9, which autoexpand relies on); the pool is only ever
 * known to the host under a temporary name, so the host's own pools are never
 * touched; datasets are mounted as legacy mounts with `mount -t zfs`.
 */
import { mkdir } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { resolve } from 'node:path';
import { createExec } from '../../../lib/execution/exec.ts';
import type { Exec, ExecOptions } from '../../../lib/execution/types.ts';
import {
  POOL_NAME,
  hostPath,
  inCoreName,
  makeTempDir,
  releaseExecOptions,
  removeTempDir,
  UNDO,
} from './driver.ts';
import { compareMounts, inMountOrder, zfsCreateArgs, zpoolCreateArgs } from '../generators.ts';
import type {
  AdaptedProperties,
  CreatePoolOptions,
  DatasetMount,
  ImportPoolOptions,
  MountState,
  PoolHandle,
  PropertyDefaults,
  PropertyRequest,
  ReleaseOptions,
  ZfsDriver,
  ZfsProperties,
  ZfsSession,
} from './driver.ts';

/** Dependencies of the openzfs driver; tests pass a recording `exec` and fixed names. */
export interface OpenZfsOptions {
  readonly exec?: Exec;
  readonly zpool?: string;
  readonly zfs?: string;
  readonly losetup?: string;
  readonly mount?: string;
  readonly umount?: string;
  /** Makes the temporary in-core pool name (default `<pool>-img<8 hex digits>`). */
  readonly temporaryName?: (pool: string) => string;
}

/** Creates the openzfs driver. */
export function createOpenZfsDriver(options: OpenZfsOptions = {}): ZfsDriver {
  const exec = options.exec ?? createExec();
  const zpool = options.zpool ?? 'zpool';
  const zfs = options.zfs ?? 'zfs';
  const losetup = options.losetup ?? 'losetup';
  const mountProgram = options.mount ?? 'mount';
  const umountProgram = options.umount ?? 'umount';
  const temporaryName = options.temporaryName ?? ((pool: string) => `${pool}-img${randomBytes(4).toString('hex')}`);

  const isImported = async (name: string): Promise<boolean> => {
    const { stdout } = await exec(zpool, ['list', '-H', '-o', 'name'], { quiet: true });
    return stdout.split('\n').includes(name);
  };

  // the in-core name must be free; the on-disk name may clash with a host pool, that is the point
  const freeTemporaryName = async (pool: string): Promise<string> => {
    if (!POOL_NAME.test(pool)) throw new Error(`invalid pool name '${pool}'`);
    for (let attempt = 0; attempt < 5; attempt++) {
      const name = temporaryName(pool);
      if (!(await isImported(name))) return name;
    }
    throw new Error(`no free temporary pool name for '${pool}'`);
  };

  // --partscan: ZFS partitions a whole disk and then opens partition 1
  const attach = async (vdev: string): Promise<string> => {
    const { stdout } = await exec(losetup, ['--find', '--show', '--partscan', vdev]);
    const device = stdout.trim();
    if (!device.startsWith('/dev/')) throw new Error(`losetup printed no device for ${vdev}: '${device}'`);
    return device;
  };

  const detach = async (device: string, options: ExecOptions = {}): Promise<void> => {
    await exec(losetup, ['-d', device], options);
  };

  // Undoes a create or import that failed or was interrupted part way, even after Ctrl-C: the
  // kernel may have finished it (the in-core name is ours alone), and an interrupted losetup may
  // have attached a device it never printed.
  const abandon = async (name: string, vdev: string, device: string | undefined): Promise<void> => {
    const listed = await exec(zpool, ['list', '-H', '-o', 'name'], UNDO).catch(() => undefined);
    if (listed?.stdout.split('\n').includes(name)) await exec(zpool, ['export', '-f', name], UNDO).catch(() => undefined);
    const attached = await exec(losetup, ['--list', '--noheadings', '--output', 'NAME', '--associated', vdev], UNDO).catch(() => undefined);
    const devices = new Set([...(device ? [device] : []), ...(attached?.stdout ?? '').split('\n').map((line) => line.trim()).filter(Boolean)]);
    for (const loop of devices) await detach(loop, UNDO).catch(() => undefined);
  };

  const unmountAll = async (_handle: PoolHandle, state: MountState, release: ReleaseOptions = {}): Promise<void> => {
    const errors: unknown[] = [];
    // the reverse of mount order: children before their parents
    const ordered = [...state.mounted].sort((a, b) => compareMounts(b.path, a.path));
    for (const entry of ordered) {
      try {
        await exec(umountProgram, [entry.path], releaseExecOptions(release));
      } catch (error) {
        if (!release.force) throw error;
        errors.push(error);
      }
    }
    if (errors.length > 0) throw errors[0];
  };

  const exportPool = async (handle: PoolHandle, release: ReleaseOptions = {}): Promise<void> => {
    await exec(zpool, ['export', ...(release.force ? ['-f'] : []), handle.name], releaseExecOptions(release));
    if (handle.device !== undefined) await detach(handle.device, releaseExecOptions(release));
    for (const dir of handle.tempDirs) await removeTempDir(dir);
  };

  const mountDatasets = async (handle: PoolHandle, mounts: readonly DatasetMount[]): Promise<MountState> => {
    const mounted: { dataset: string; path: string }[] = [];
    try {
      for (const entry of inMountOrder(mounts)) {
        const dataset = inCoreName(handle, entry.dataset);
        const path = hostPath(handle.root, entry.mount);
        // inside the parent dataset just mounted, as the seed's `mkdir -p /mnt<mount>`
        await mkdir(path, { recursive: true });
        await exec(mountProgram, ['-t', 'zfs', dataset, path]);
        mounted.push({ dataset, path });
      }
    } catch (error) {
      await unmountAll(handle, { mounted, restore: [] }, { force: true }).catch(() => undefined);
      throw error;
    }
    return { mounted, restore: [] };
  };

  return {
    name: 'openzfs',

    async prepare(): Promise<ZfsSession> {
      // the kernel module needs no service of ours
      return { started: false, stop: async () => ({ stopped: false, reason: 'openzfs needs no daemon' }) };
    },

    adaptProperties(request: PropertyRequest, _defaults: PropertyDefaults): AdaptedProperties {
      return { ...request, warnings: [], refused: [] };
    },

    isImported,

    async createPool(create: CreatePoolOptions): Promise<PoolHandle> {
      const name = await freeTemporaryName(create.pool);
      const vdev = resolve(create.vdev);
      const tempDirs = create.root === undefined ? [await makeTempDir(vdev, '.zfs-root-')] : [];
      const root = create.root ?? (tempDirs[0] as string);
      let device: string | undefined;
      try {
        device = await attach(vdev);
        // -t: the on-disk name is the pool's, the host only sees the temporary one; -R keeps any mount off the host
        await exec(zpool, zpoolCreateArgs({ ...create, vdev: device, altroot: root, tempName: name }));
      } catch (error) {
        await abandon(name, vdev, device);
        for (const dir of tempDirs) await removeTempDir(dir).catch(() => undefined);
        throw error;
      }
      return { driver: 'openzfs', pool: create.pool, name, vdev, root, device, tempDirs };
    },

    async createDataset(handle: PoolHandle, dataset: string, properties: ZfsProperties): Promise<void> {
      await exec(zfs, zfsCreateArgs(inCoreName(handle, dataset), properties));
    },

    async importPool(imp: ImportPoolOptions): Promise<PoolHandle> {
      const name = await freeTemporaryName(imp.pool);
      const vdev = resolve(imp.vdev);
      let device: string | undefined;
      try {
        device = await attach(vdev);
        // -d on the partition of this device only: never another copy of the pool; -N: mount nothing
        await exec(zpool, ['import', '-d', `${device}p1`, '-N', '-R', imp.root, '-t', imp.pool, name]);
      } catch (error) {
        await abandon(name, vdev, device);
        throw error;
      }
      return { driver: 'openzfs', pool: imp.pool, name, vdev, root: imp.root, device, tempDirs: [] };
    },

    mountDatasets,
    unmountAll,
    exportPool,
  };
}

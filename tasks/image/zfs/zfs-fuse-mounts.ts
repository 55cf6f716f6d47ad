/**
 * Mounting a zfs-fuse pool's datasets for an install, and undoing it. zfs-fuse has no
 * `mount -t zfs`: a dataset mounts when its mountpoint property is set (under the pool's altroot),
 * so mounting changes properties that must be set back before export.
 */
import { kernelPath, mountsAtOrBelow, readMountTable, type MountEntry } from '../../../lib/execution/mount-table.ts';
import type { Exec } from '../../../lib/execution/types.ts';
import { compareMounts, inMountOrder } from '../generators.ts';
import { hostPath, inCoreName, releaseExecOptions, type DatasetMount, type MountState, type PoolHandle, type ReleaseOptions } from './driver.ts';
import { ZFS_FUSE_FS_TYPE } from './zfs-fuse-host.ts';

/** How the mount helpers reach zfs-fuse: the driver's exec (locked, time-limited) and its `zfs`. */
export interface ZfsFuseCommands {
  readonly exec: Exec;
  readonly zfs: string;
}

/**
 * The pool's datasets mounted on this host, from the kernel's mount table: what really is
 * mounted where (zfs-fuse's `mounted` property can disagree), at no daemon round trip.
 */
export async function mountedDatasets(pool: string, root: string): Promise<MountEntry[]> {
  // only under this pool's root: a dead earlier daemon may have left mounts of a pool of the same name elsewhere
  return mountsAtOrBelow(await readMountTable(), await kernelPath(root)).filter(
    (entry) => entry.fsType === ZFS_FUSE_FS_TYPE && (entry.source === pool || entry.source.startsWith(`${pool}/`)),
  );
}

/**
 * Unmounts every mounted dataset of the pool, deepest mount point first. With `force`, failures
 * are collected in `errors` and the rest still unmount.
 */
export async function unmountEverything(commands: ZfsFuseCommands, name: string, root: string, force: boolean, errors: unknown[]): Promise<void> {
  const mounted = (await mountedDatasets(name, root)).sort((a, b) => compareMounts(b.target, a.target));
  for (const entry of mounted) {
    try {
      // no -f: a forced FUSE unmount detaches the mount but leaves the pool busy for export
      await commands.exec(commands.zfs, ['umount', entry.source], releaseExecOptions({ force }));
    } catch (error) {
      if (!force) throw error;
      errors.push(error);
    }
  }
}

/** Unmounts the pool's datasets and sets back the mountpoints `mountDatasets` changed. */
export async function unmountAll(commands: ZfsFuseCommands, handle: PoolHandle, state: MountState, release: ReleaseOptions = {}): Promise<void> {
  const { exec, zfs } = commands;
  const force = release.force ?? false;
  const errors: unknown[] = [];
  await unmountEverything(commands, handle.name, handle.root, force, errors);
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
  await unmountEverything(commands, handle.name, handle.root, force, errors);
  if (errors.length > 0) throw errors[0];
}

/** The pool's `mountpoint` (value, set locally or not) and `canmount` per dataset, in one query. */
async function mountProperties(commands: ZfsFuseCommands, pool: string): Promise<{ current: Map<string, { value: string; local: boolean }>; canmount: Map<string, string> }> {
  // one query for both: each extra zfs command costs a round trip to the daemon
  const { stdout } = await commands.exec(commands.zfs, ['get', '-H', '-o', 'name,property,value,source', '-r', 'mountpoint,canmount', pool], { quiet: true });
  const current = new Map<string, { value: string; local: boolean }>();
  const canmount = new Map<string, string>();
  for (const line of stdout.split('\n')) {
    const [dataset, property, value, source] = line.split('\t');
    // snapshots and volumes have no mountpoint ('-')
    if (!dataset || dataset.includes('@') || value === undefined || value === '-' || source === undefined) continue;
    if (property === 'canmount') canmount.set(dataset, value);
    else current.set(dataset, { value, local: source === 'local' });
  }
  return { current, canmount };
}

/**
 * Mounts the datasets at their paths under the pool's altroot, parents first, and checks in the
 * kernel's mount table that each one is mounted where the image needs it. On failure, whatever it
 * did is undone before the error is thrown.
 */
export async function mountDatasets(commands: ZfsFuseCommands, handle: PoolHandle, mounts: readonly DatasetMount[]): Promise<MountState> {
  const { exec, zfs } = commands;
  const ordered = inMountOrder(mounts).map((entry) => ({
    dataset: inCoreName(handle, entry.dataset),
    mount: entry.mount,
    path: hostPath(handle.root, entry.mount),
  }));
  const { current, canmount } = await mountProperties(commands, handle.name);
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
    await unmountAll(commands, handle, { mounted, restore }, { force: true }).catch(() => undefined);
    throw error;
  }
  return { mounted, restore };
}

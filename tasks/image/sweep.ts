import { realpath } from 'node:fs/promises';
import { fail, ok, type Result } from '../../lib/engine/result.ts';
import { ranAndFailed } from '../../lib/execution/command-error.ts';
import { createExec } from '../../lib/execution/exec.ts';
import type { Exec } from '../../lib/execution/types.ts';
import type { Sweeper } from '../../lib/caching/sweep.ts';
import { mountsUnder } from '../../lib/execution/mount-table.ts';
import { findProgram } from '../../lib/execution/which.ts';
import { zfsModuleLoaded } from './zfs/select-driver.ts';
import { zfsCommandTimeoutMsOrDefault, zfsFuseRequests } from './zfs/zfs-fuse-host.ts';

/** Loop devices whose backing file lies under one of `folders` (from `losetup --list`, which gives real paths). */
async function loopDevicesUnder(exec: Exec, folders: readonly string[]): Promise<string[]> {
  const listing = await exec('losetup', ['--list', '--noheadings', '--output', 'NAME,BACK-FILE'], { quiet: true, okExitCodes: [1] }).catch(() => undefined);
  return (listing?.stdout ?? '')
    .split('\n')
    .map((line) => line.trim().split(/\s+/))
    .filter(([name, file]) => name && file && folders.some((folder) => file.startsWith(`${folder}/`)))
    .map(([name]) => name!);
}

const escapeRegExp = (text: string): string => text.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');

/**
 * Whether `zpool status` text names a vdev under one of `folders` or on one of the loop
 * `devices`. OpenZFS prints a loop device's partition by its short name (`loop3p1`), zfs-fuse
 * prints the path it was given; both forms match.
 */
export function statusUsesVdev(status: string, folders: readonly string[], devices: readonly string[]): boolean {
  if (folders.some((folder) => status.includes(`${folder}/`))) return true;
  return devices.some((device) => new RegExp(`\\s(/dev/)?${escapeRegExp(device.replace(/^\/dev\//, ''))}(p\\d+)?\\s`).test(status));
}

/**
 * Imported pools with a vdev under one of `folders` or on one of `devices` (parsed from `zpool status`),
 * or why that is not known. `zpool` exiting non-zero means no daemon or module answers, so no pools;
 * a time limit or a signal proves nothing. `exec` should set a time limit: a hung daemon must not
 * hang the sweep at the start of every build.
 */
export async function poolsUsing(exec: Exec, zpool: string, folders: readonly string[], devices: readonly string[]): Promise<Result<string[], string>> {
  const options = { quiet: true };
  const ask = (args: string[]) => exec(zpool, args, options).then((r) => ok(r.stdout), (error: unknown) => (ranAndFailed(error) ? ok('') : fail((error as Error).message)));
  const names = await ask(['list', '-H', '-o', 'name']);
  if (!names.ok) return names;
  const pools: string[] = [];
  for (const pool of names.value.split('\n').filter(Boolean)) {
    const status = await ask(['status', pool]);
    if (!status.ok) return status;
    if (statusUsesVdev(status.value, folders, devices)) pools.push(pool);
  }
  return ok(pools);
}

/**
 * Releases what a killed build left in one of its working folders: the pool imported from a
 * disk in it (never any other pool), mounts under it (datasets, bound /dev, /proc, /sys), and
 * loop devices on its files. Returns one line per thing cleaned, for the run to print, and keeps
 * the folder when a pool imported from it could not be exported.
 */
export function imageSweeper(exec: Exec = createExec()): Sweeper {
  return async ({ folder }) => {
    const report: string[] = [];
    const busy: string[] = [];
    // the folder as given and as the kernel and losetup name it (the cache may be reached through a link)
    const folders = [...new Set([folder, await realpath(folder).catch(() => folder)])];
    const devices = await loopDevicesUnder(exec, folders);
    const zpool = findProgram('zpool');
    if (zpool) {
      // zfs-fuse's requests take turns on its host lock (an unmount racing another build's mount can hang it); kernel pools need none
      const zfsExec: Exec = zfsModuleLoaded()
        ? (file, args, options) => exec(file, args, { ...options, timeoutMs: zfsCommandTimeoutMsOrDefault() })
        : zfsFuseRequests(exec);
      const using = await poolsUsing(zfsExec, zpool, folders, devices);
      // a pool may still be imported from the folder: deleting under it would lose the pool's disk
      if (!using.ok) return { lines: report, keep: `zfs could not say which pools use it (${using.error})` };
      for (const pool of using.value) {
        const options = { quiet: true };
        const exported = await zfsExec(zpool, ['export', pool], options).then(
          () => true,
          () => zfsExec(zpool, ['export', '-f', pool], options).then(() => true, () => false),
        );
        report.push(exported ? `exported pool ${pool} left imported by a dead run` : `could not export pool ${pool} (imported from ${folder}); export it by hand`);
        if (!exported) busy.push(`pool ${pool} is still imported from it`);
      }
    }
    // a pool still imported from the folder keeps its mounts, loop devices and files: `clean` too
    // then leaves the mounted folder alone
    if (busy.length > 0) return { lines: report, keep: busy.join('; ') };
    // Deepest first, lazily: a bound /dev with submounts, or a FUSE mount whose daemon died.
    for (const mount of (await mountsUnder(folder)).sort((a, b) => b.length - a.length)) {
      const done = await exec('umount', ['--lazy', mount], { quiet: true }).then(() => true, () => false);
      report.push(done ? `unmounted ${mount} left by a dead run` : `could not unmount ${mount}; unmount it by hand`);
    }
    for (const device of devices) {
      const done = await exec('losetup', ['--detach', device], { quiet: true }).then(() => true, () => false);
      report.push(done ? `detached loop device ${device} left by a dead run` : `could not detach ${device}`);
    }
    return { lines: report };
  };
}

import { createExec } from '../../lib/execution/exec.ts';
import type { Exec } from '../../lib/execution/types.ts';
import { mountsUnder, type Sweeper } from '../../lib/caching/sweep.ts';
import { findProgram, zfsModuleLoaded } from './zfs/select-driver.ts';
import { zfsCommandTimeoutMsOrDefault, zfsFuseRequests } from './zfs/zfs-fuse-host.ts';

/** Loop devices whose backing file lies under `folder` (from `losetup --list`). */
export async function loopDevicesUnder(exec: Exec, folder: string): Promise<string[]> {
  const listing = await exec('losetup', ['--list', '--noheadings', '--output', 'NAME,BACK-FILE'], { quiet: true, okExitCodes: [1] }).catch(() => undefined);
  return (listing?.stdout ?? '')
    .split('\n')
    .map((line) => line.trim().split(/\s+/))
    .filter(([name, file]) => name && file && file.startsWith(`${folder}/`))
    .map(([name]) => name!);
}

/**
 * Imported pools with a vdev under `folder` or on one of `devices` (parsed from `zpool status`).
 * `exec` should set a time limit: a hung daemon must not hang the sweep at the start of every build.
 */
export async function poolsUsing(exec: Exec, zpool: string, folder: string, devices: readonly string[]): Promise<string[]> {
  const options = { quiet: true };
  const names = await exec(zpool, ['list', '-H', '-o', 'name'], options).catch(() => undefined);
  const pools: string[] = [];
  for (const pool of (names?.stdout ?? '').split('\n').filter(Boolean)) {
    const status = await exec(zpool, ['status', pool], options).catch(() => undefined);
    const text = status?.stdout ?? '';
    if (text.includes(`${folder}/`) || devices.some((d) => new RegExp(`\\s${d.replace(/\//g, '\\/')}(p\\d+)?\\s`).test(text))) pools.push(pool);
  }
  return pools;
}

/**
 * Releases what a killed build left in one of its working folders: the pool imported from a
 * disk in it (never any other pool), mounts under it (datasets, bound /dev, /proc, /sys), and
 * loop devices on its files. Returns one line per thing cleaned, for the run to print.
 */
export function imageSweeper(exec: Exec = createExec()): Sweeper {
  return async ({ folder }) => {
    const report: string[] = [];
    const devices = await loopDevicesUnder(exec, folder);
    const zpool = findProgram('zpool');
    if (zpool) {
      // zfs-fuse's requests take turns on its host lock (an unmount racing another build's mount can hang it); kernel pools need none
      const zfsExec: Exec = zfsModuleLoaded()
        ? (file, args, options) => exec(file, args, { ...options, timeoutMs: zfsCommandTimeoutMsOrDefault() })
        : zfsFuseRequests(exec);
      for (const pool of await poolsUsing(zfsExec, zpool, folder, devices)) {
        const options = { quiet: true };
        const exported = await zfsExec(zpool, ['export', pool], options).then(
          () => true,
          () => zfsExec(zpool, ['export', '-f', pool], options).then(() => true, () => false),
        );
        report.push(exported ? `exported pool ${pool} left imported by a dead run` : `could not export pool ${pool} (imported from ${folder}); export it by hand`);
      }
    }
    // Deepest first, lazily: a bound /dev with submounts, or a FUSE mount whose daemon died.
    for (const mount of (await mountsUnder(folder)).sort((a, b) => b.length - a.length)) {
      const done = await exec('umount', ['--lazy', mount], { quiet: true }).then(() => true, () => false);
      report.push(done ? `unmounted ${mount} left by a dead run` : `could not unmount ${mount}; unmount it by hand`);
    }
    for (const device of devices) {
      const done = await exec('losetup', ['--detach', device], { quiet: true }).then(() => true, () => false);
      report.push(done ? `detached loop device ${device} left by a dead run` : `could not detach ${device}`);
    }
    return report;
  };
}

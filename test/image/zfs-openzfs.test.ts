// The openzfs driver checked by the exact commands it runs (recorded through a fake exec): these
// machines have no ZFS kernel module, so no real OpenZFS pool can be made here. The zfs-fuse driver
// runs for real in zfs-fuse.test.ts.
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { CommandError } from '../../lib/execution/command-error.ts';
import type { Exec, ExecResult } from '../../lib/execution/types.ts';
import { createOpenZfsDriver } from '../../tasks/image/zfs/openzfs.ts';
import { selectDriver } from '../../tasks/image/zfs/select-driver.ts';

/** A fake exec that records every argv (and which ran as an undo, past an abort) and answers from a script. */
function recorder(answer: (argv: string[]) => string | Error = () => '') {
  const calls: string[][] = [];
  const undone: string[][] = [];
  const exec: Exec = async (file, args, options): Promise<ExecResult> => {
    const argv = [file, ...args];
    calls.push(argv);
    if (options?.ignoreAbort) undone.push(argv);
    const out = answer(argv);
    if (out instanceof Error) throw out;
    return { command: argv.join(' '), exitCode: 0, stdout: out, stderr: '' };
  };
  return { exec, calls, undone };
}

const fail = (command: string): CommandError => new CommandError({ command, exitCode: 1, tail: ['boom'] });

/** Answers losetup with a loop device and zpool list with the given pools. */
const host = (pools: string[] = []) => (argv: string[]): string => {
  if (argv[0] === 'losetup' && argv[1] === '--find') return '/dev/loop7\n';
  if (argv[0] === 'zpool' && argv[1] === 'list') return pools.map((p) => `${p}\n`).join('');
  return '';
};

let root: string;
beforeEach(async () => {
  root = await mkdtemp(join(tmpdir(), 'openzfs-test-'));
});
afterEach(async () => {
  await rm(root, { recursive: true, force: true });
});

describe('openzfs driver (recorded commands)', () => {
  it('creates the pool on a loop device under a temporary name, then datasets, then exports', async () => {
    const { exec, calls } = recorder(host(['tank']));
    const driver = createOpenZfsDriver({ exec, temporaryName: (pool) => `${pool}-imgT` });
    const handle = await driver.createPool({
      pool: 'tank',
      vdev: '/work/disk/root.raw',
      root,
      poolProperties: { autoexpand: 'on' },
      filesystemProperties: { xattr: 'sa', acltype: 'posixacl', mountpoint: 'legacy', compression: 'lz4' },
    });
    expect(handle).toMatchObject({ driver: 'openzfs', pool: 'tank', name: 'tank-imgT', device: '/dev/loop7', root });
    await driver.createDataset(handle, 'tank/root', {});
    await driver.createDataset(handle, 'tank/home', { 'com.example:x': 'a b', compression: 'zstd' });
    await driver.exportPool(handle);
    expect(calls).toEqual([
      ['zpool', 'list', '-H', '-o', 'name'],
      ['losetup', '--find', '--show', '--partscan', '/work/disk/root.raw'],
      [
        'zpool', 'create', '-R', root, '-t', 'tank-imgT',
        '-o', 'autoexpand=on',
        '-O', 'acltype=posixacl', '-O', 'compression=lz4', '-O', 'mountpoint=legacy', '-O', 'xattr=sa',
        'tank', '/dev/loop7',
      ],
      ['zfs', 'create', '-p', 'tank-imgT/root'],
      ['zfs', 'create', '-p', '-o', 'com.example:x=a b', '-o', 'compression=zstd', 'tank-imgT/home'],
      ['zpool', 'export', 'tank-imgT'],
      ['losetup', '-d', '/dev/loop7'],
    ]);
  });

  it('imports from the loop device only, mounts shortest path first, unmounts longest first', async () => {
    const { exec, calls } = recorder(host());
    const driver = createOpenZfsDriver({ exec, temporaryName: () => 'tank-imgT' });
    const handle = await driver.importPool({ pool: 'tank', vdev: '/w/root.raw', root });
    const state = await driver.mountDatasets(handle, [
      { dataset: 'tank/nix/store', mount: '/nix/store' },
      { dataset: 'tank/home', mount: '/home' },
      { dataset: 'tank/root', mount: '/' },
      { dataset: 'tank/nix', mount: '/nix' },
    ]);
    expect((await stat(join(root, 'nix/store'))).isDirectory()).toBe(true);
    await driver.unmountAll(handle, state);
    await driver.exportPool(handle);
    expect(calls).toEqual([
      ['zpool', 'list', '-H', '-o', 'name'],
      ['losetup', '--find', '--show', '--partscan', '/w/root.raw'],
      ['zpool', 'import', '-d', '/dev/loop7p1', '-N', '-R', root, '-t', 'tank', 'tank-imgT'],
      ['mount', '-t', 'zfs', 'tank-imgT/root', root],
      ['mount', '-t', 'zfs', 'tank-imgT/nix', `${root}/nix`],
      ['mount', '-t', 'zfs', 'tank-imgT/home', `${root}/home`],
      ['mount', '-t', 'zfs', 'tank-imgT/nix/store', `${root}/nix/store`],
      ['umount', `${root}/nix/store`],
      ['umount', `${root}/home`],
      ['umount', `${root}/nix`],
      ['umount', root],
      ['zpool', 'export', 'tank-imgT'],
      ['losetup', '-d', '/dev/loop7'],
    ]);
  });

  it('never reuses an in-core name that is imported', async () => {
    const { exec } = recorder(host(['tank-img1']));
    const names = ['tank-img1', 'tank-img2'];
    const driver = createOpenZfsDriver({ exec, temporaryName: () => names.shift() ?? 'none' });
    const handle = await driver.importPool({ pool: 'tank', vdev: '/w/root.raw', root });
    expect(handle.name).toBe('tank-img2');
  });

  it('detaches the loop device when create fails', async () => {
    const { exec, calls } = recorder((argv) => (argv[1] === 'create' ? fail('zpool create') : host()(argv)));
    const driver = createOpenZfsDriver({ exec, temporaryName: () => 'tank-imgT' });
    await expect(
      driver.createPool({ pool: 'tank', vdev: '/w/root.raw', root, poolProperties: {}, filesystemProperties: {} }),
    ).rejects.toThrow(CommandError);
    expect(calls.at(-1)).toEqual(['losetup', '-d', '/dev/loop7']);
  });

  it('detaches the loop device when import fails', async () => {
    const { exec, calls } = recorder((argv) => (argv[1] === 'import' ? fail('zpool import') : host()(argv)));
    const driver = createOpenZfsDriver({ exec, temporaryName: () => 'tank-imgT' });
    await expect(driver.importPool({ pool: 'tank', vdev: '/w/root.raw', root })).rejects.toThrow(CommandError);
    expect(calls.at(-1)).toEqual(['losetup', '-d', '/dev/loop7']);
  });

  it('unmounts what it mounted when a mount fails', async () => {
    const { exec, calls } = recorder((argv) => (argv[3] === 'tank-imgT/home' ? fail('mount') : host()(argv)));
    const driver = createOpenZfsDriver({ exec, temporaryName: () => 'tank-imgT' });
    const handle = await driver.importPool({ pool: 'tank', vdev: '/w/root.raw', root });
    await expect(
      driver.mountDatasets(handle, [
        { dataset: 'tank/root', mount: '/' },
        { dataset: 'tank/home', mount: '/home' },
      ]),
    ).rejects.toThrow(CommandError);
    expect(calls.slice(-2)).toEqual([
      ['mount', '-t', 'zfs', 'tank-imgT/home', `${root}/home`],
      ['umount', root],
    ]);
  });

  it('forces export after a failure, even past Ctrl-C', async () => {
    const { exec, calls, undone } = recorder(host());
    const driver = createOpenZfsDriver({ exec, temporaryName: () => 'tank-imgT' });
    const handle = await driver.importPool({ pool: 'tank', vdev: '/w/root.raw', root });
    await driver.exportPool(handle, { force: true });
    expect(calls.slice(-2)).toEqual([
      ['zpool', 'export', '-f', 'tank-imgT'],
      ['losetup', '-d', '/dev/loop7'],
    ]);
    expect(undone).toEqual(calls.slice(-2));
  });

  it('exports an import that Ctrl-C stopped after the kernel finished it, and detaches its device', async () => {
    const aborted = new CommandError({ command: 'zpool import', exitCode: -1, signal: 'SIGTERM', tail: [], aborted: true });
    let imported = false;
    const { exec, undone } = recorder((argv) => {
      if (argv[1] === 'import') {
        imported = true; // the kernel got there before the signal
        return aborted;
      }
      return host(imported ? ['tank-imgT'] : [])(argv);
    });
    const driver = createOpenZfsDriver({ exec, temporaryName: () => 'tank-imgT' });
    await expect(driver.importPool({ pool: 'tank', vdev: '/w/root.raw', root })).rejects.toBe(aborted);
    expect(undone).toEqual([
      ['zpool', 'list', '-H', '-o', 'name'],
      ['zpool', 'export', '-f', 'tank-imgT'],
      ['losetup', '--list', '--noheadings', '--output', 'NAME', '--associated', '/w/root.raw'],
      ['losetup', '-d', '/dev/loop7'],
    ]);
  });

  it('detaches a loop device an interrupted losetup attached without printing it', async () => {
    const aborted = new CommandError({ command: 'losetup', exitCode: -1, signal: 'SIGTERM', tail: [], aborted: true });
    const { exec, undone } = recorder((argv) => {
      if (argv[0] === 'losetup' && argv[1] === '--find') return aborted;
      if (argv[0] === 'losetup' && argv[1] === '--list') return '/dev/loop9\n';
      return host()(argv);
    });
    const driver = createOpenZfsDriver({ exec, temporaryName: () => 'tank-imgT' });
    await expect(driver.createPool({ pool: 'tank', vdev: '/w/root.raw', root, poolProperties: {}, filesystemProperties: {} })).rejects.toBe(aborted);
    expect(undone.at(-1)).toEqual(['losetup', '-d', '/dev/loop9']);
    expect(undone.some((argv) => argv[1] === 'export')).toBe(false); // nothing was imported
  });

  it('passes every property through', () => {
    const driver = createOpenZfsDriver({ exec: recorder().exec });
    const request = { pool: { 'feature@lz4_compress': 'enabled' }, filesystem: { acltype: 'posixacl' }, datasets: {} };
    expect(driver.adaptProperties(request, { pool: {}, filesystem: {} })).toEqual({ ...request, warnings: [], refused: [] });
  });

  it('refuses a dataset outside the pool', async () => {
    const driver = createOpenZfsDriver({ exec: recorder(host()).exec, temporaryName: () => 'tank-imgT' });
    const handle = await driver.importPool({ pool: 'tank', vdev: '/w/root.raw', root });
    await expect(driver.createDataset(handle, 'tankx/root', {})).rejects.toThrow(/not in pool 'tank'/);
  });
});

describe('driver selection', () => {
  const programs = (names: string[]) => (name: string) => (names.includes(name) ? `/usr/sbin/${name}` : undefined);

  it('auto takes openzfs when the module is loaded', () => {
    const driver = selectDriver('auto', { moduleLoaded: () => true, findProgram: programs(['zpool', 'zfs', 'zfs-fuse']) });
    expect(driver.name).toBe('openzfs');
  });

  it('auto takes zfs-fuse without the module', () => {
    const driver = selectDriver('auto', { moduleLoaded: () => false, findProgram: programs(['zpool', 'zfs', 'zfs-fuse']) });
    expect(driver.name).toBe('zfs-fuse');
  });

  it('auto says what to install when there is no ZFS', () => {
    expect(() => selectDriver('auto', { moduleLoaded: () => false, findProgram: programs([]) })).toThrow(
      /apt-get install zfs-fuse.*boot\.supportedFilesystems/,
    );
  });

  it('openzfs asked for without the module is refused', () => {
    expect(() => selectDriver('openzfs', { moduleLoaded: () => false, findProgram: programs(['zpool']) })).toThrow(
      /kernel module, which is not loaded/,
    );
  });

  it('zfs-fuse asked for without the package is refused', () => {
    expect(() => selectDriver('zfs-fuse', { moduleLoaded: () => true, findProgram: programs(['zpool']) })).toThrow(
      /zfs-fuse, which is not installed/,
    );
  });
});

import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { mkdtemp, readFile, rm, stat, symlink, truncate, writeFile, mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CommandError } from '../../lib/execution/command-error.ts';
import { createExec } from '../../lib/execution/exec.ts';
import { mountsUnder } from '../../lib/execution/mount-table.ts';
import type { MountState, PoolHandle, ZfsDriver, ZfsSession } from '../../tasks/image/zfs/driver.ts';
import type { Exec } from '../../lib/execution/types.ts';
import type { HostLock } from '../../lib/execution/host-lock.ts';
import { createZfsFuseDriver } from '../../tasks/image/zfs/zfs-fuse.ts';
import { adaptPropertiesForZfsFuse } from '../../tasks/image/zfs/zfs-fuse-properties.ts';
import { zfsCommandTimeoutMs } from '../../tasks/image/zfs/zfs-fuse-host.ts';
import { findProgram } from '../../lib/execution/which.ts';
import { selectDriver } from '../../tasks/image/zfs/select-driver.ts';
import { prepareDaemon, type DaemonClient } from '../../tasks/image/zfs/zfs-fuse-daemon.ts';
import { otherZfsUsers, STARTER_FILE, useZfs, ZFS_USERS_DIR, ZFS_USERS_LOCK_FILE } from '../../tasks/image/stages/zfs-session.ts';
import { execa } from 'execa';
import { deadPid } from '../helpers/wait.ts';

const SEED_DEFAULTS = {
  pool: { autoexpand: 'on' },
  filesystem: { acltype: 'posixacl', atime: 'off', compression: 'on', mountpoint: 'legacy', xattr: 'sa' },
};

describe('zfs-fuse property adaptation', () => {
  it('drops the seed defaults it cannot set, with a warning each', () => {
    const adapted = adaptPropertiesForZfsFuse({ ...SEED_DEFAULTS, datasets: {} }, SEED_DEFAULTS);
    expect(adapted.refused).toEqual([]);
    expect(adapted.pool).toEqual({ autoexpand: 'on' });
    expect(adapted.filesystem).toEqual({ atime: 'off', compression: 'on', mountpoint: 'legacy' });
    expect(adapted.warnings).toHaveLength(2);
    expect(adapted.warnings.join('\n')).toMatch(/acltype=posixacl.*differs from an OpenZFS build/);
    expect(adapted.warnings.join('\n')).toMatch(/xattr=sa/);
  });

  it('refuses by name what the user asked for', () => {
    const adapted = adaptPropertiesForZfsFuse(
      {
        pool: { autoexpand: 'on', 'feature@async_destroy': 'enabled', ashift: '12' },
        filesystem: { acltype: 'posix', compression: 'lz4', xattr: 'on', recordsize: '1M' },
        datasets: { 'tank/home': { compression: 'zstd', 'com.example:x': 'y', dnodesize: 'auto' } },
      },
      SEED_DEFAULTS,
    );
    expect(adapted.refused).toEqual([
      'rootPoolProperties.feature@async_destroy=enabled: pool version 23 has no feature flags',
      expect.stringMatching(/^rootPoolFilesystemProperties\.acltype=posix: /),
      expect.stringMatching(/^rootPoolFilesystemProperties\.compression=lz4: .*gzip/),
      expect.stringMatching(/^rootPoolFilesystemProperties\.recordsize=1M: .*128K/),
      expect.stringMatching(/^datasets\.tank\/home\.properties\.compression=zstd: /),
      expect.stringMatching(/^datasets\.tank\/home\.properties\.dnodesize=auto: /),
    ]);
    expect(adapted.warnings).toEqual([]);
    expect(adapted.datasets['tank/home']).toEqual({ 'com.example:x': 'y' });
  });

  it('accepts what pool version 23 has', () => {
    const adapted = adaptPropertiesForZfsFuse(
      {
        pool: { version: '23', cachefile: 'none' },
        filesystem: { compression: 'gzip-9', checksum: 'sha256', recordsize: '128K', dedup: 'verify', 'userquota@root': '1G' },
        datasets: {},
      },
      SEED_DEFAULTS,
    );
    expect(adapted.refused).toEqual([]);
    expect(adapted.warnings).toEqual([]);
  });
});

describe('zfs-fuse commands (recorded)', () => {
  it('passes the mountpoint as -m, since zfs-fuse ignores -O mountpoint under -R', async () => {
    const calls: string[][] = [];
    const exec: Exec = async (file, args) => {
      calls.push([file, ...args]);
      return { command: file, exitCode: 0, stdout: '', stderr: '' };
    };
    const driver = createZfsFuseDriver({ exec });
    const handle = await driver.createPool({
      pool: 'tank',
      vdev: '/w/root.raw',
      root: '/w/mnt',
      poolProperties: { autoexpand: 'on' },
      filesystemProperties: { mountpoint: 'legacy', atime: 'off' },
    });
    await driver.createDataset(handle, 'tank/root', { 'com.example:x': 'y' });
    expect(calls).toEqual([
      ['zpool', 'list', '-H', '-o', 'name'],
      ['zpool', 'create', '-R', '/w/mnt', '-m', 'legacy', '-o', 'autoexpand=on', '-O', 'atime=off', 'tank', '/w/root.raw'],
      ['zfs', 'create', '-p', '-o', 'com.example:x=y', 'tank/root'],
    ]);
  });

  it('leaves alone a pool of the same name after a create that failed with an error (it may be another build\'s), and exports it after one Ctrl-C stopped', async () => {
    const run = async (failure: CommandError): Promise<string[][]> => {
      const calls: string[][] = [];
      let listed = 0;
      const exec: Exec = async (file, args) => {
        calls.push([file, ...args]);
        if (args[0] === 'create') throw failure;
        // the name check before the create finds nothing; the pool is there once the create failed
        if (args[0] === 'list') return { command: file, exitCode: 0, stdout: listed++ === 0 ? '' : 'tank\n', stderr: '' };
        return { command: file, exitCode: 0, stdout: '', stderr: '' };
      };
      await expect(createZfsFuseDriver({ exec }).createPool({ pool: 'tank', vdev: '/w/root.raw', root: '/w/mnt', poolProperties: {}, filesystemProperties: { mountpoint: 'legacy' } })).rejects.toBe(failure);
      return calls;
    };
    const failed = await run(new CommandError({ command: 'zpool create', exitCode: 1, tail: ['cannot create'] }));
    expect(failed.map((call) => call.slice(0, 2).join(' '))).toEqual(['zpool list', 'zpool create']);
    const stopped = await run(new CommandError({ command: 'zpool create', exitCode: -1, signal: 'SIGTERM', tail: [], aborted: true }));
    expect(stopped.map((call) => call.slice(0, 3).join(' '))).toEqual(['zpool list -H', 'zpool create -R', 'zpool list -H', 'zpool export -f']);
  });

  it('runs every zpool and zfs command alone under the host lock, one hold each', async () => {
    const calls: string[] = [];
    let held = false;
    const exec: Exec = async (file, args) => {
      calls.push(`${held ? 'locked' : 'UNLOCKED'} ${file} ${args[0]}`);
      return { command: file, exitCode: 0, stdout: '', stderr: '' };
    };
    const lock: HostLock = {
      async hold(work) {
        expect(held).toBe(false); // never nested: a nested hold would wait for itself
        held = true;
        try {
          return await work();
        } finally {
          held = false;
        }
      },
    };
    const driver = createZfsFuseDriver({ exec, lock });
    const handle = await driver.createPool({ pool: 'tank', vdev: '/w/root.raw', root: '/w/mnt', poolProperties: {}, filesystemProperties: {} });
    await driver.createDataset(handle, 'tank/root', {});
    await driver.exportPool({ ...handle, tempDirs: [] });
    expect(calls).toEqual(['locked zpool list', 'locked zpool create', 'locked zfs create', 'locked zpool export']);
  });

  it('refuses a pool name that is imported already', async () => {
    const exec: Exec = async (file, args) => ({ command: file, exitCode: 0, stdout: args[0] === 'list' ? 'tank\n' : '', stderr: '' });
    const driver = createZfsFuseDriver({ exec });
    await expect(
      driver.createPool({ pool: 'tank', vdev: '/w/root.raw', root: '/w/mnt', poolProperties: {}, filesystemProperties: {} }),
    ).rejects.toThrow(/already imported on this host.*temporary name/);
  });
});

describe('zfs command time limit', () => {
  it('reads ZFS_IMAGE_ZFS_TIMEOUT in seconds, 0 for none, and refuses what a timer cannot hold', () => {
    expect(zfsCommandTimeoutMs({})).toBe(120_000);
    expect(zfsCommandTimeoutMs({ ZFS_IMAGE_ZFS_TIMEOUT: ' ' })).toBe(120_000);
    expect(zfsCommandTimeoutMs({ ZFS_IMAGE_ZFS_TIMEOUT: '1.5' })).toBe(1500);
    expect(zfsCommandTimeoutMs({ ZFS_IMAGE_ZFS_TIMEOUT: '0' })).toBeUndefined();
    expect(zfsCommandTimeoutMs({ ZFS_IMAGE_ZFS_TIMEOUT: '2147483' })).toBe(2_147_483_000);
    for (const bad of ['2147484', '-1', '2m', 'Infinity', '0x10', '1e2']) {
      expect(() => zfsCommandTimeoutMs({ ZFS_IMAGE_ZFS_TIMEOUT: bad })).toThrow(
        `ZFS_IMAGE_ZFS_TIMEOUT: must be a number of seconds from 0 (no limit) to 2147483, not "${bad}"`,
      );
    }
  });
});

describe('the daemon a build starts (recorded)', () => {
  /** A client whose daemon starts at once and then lists `pools()`; the start writes the pid file as zfs-fuse does. */
  const client = (pools: () => string[]): DaemonClient & { started: string[][] } => {
    let up = false;
    const started: string[][] = [];
    return {
      started,
      daemon: 'zfs-fuse',
      exec: async (file, args) => {
        if (file === 'zfs-fuse') {
          started.push([...args]);
          await writeFile(args[1]!, '999999999\n'); // no such process: stopping it finds nothing to signal
          up = true;
        }
        return { command: file, exitCode: 0, stdout: '', stderr: '' };
      },
      answers: async () => up,
      poolNames: async () => pools(),
      lastListed: () => undefined,
    };
  };

  it('is left running while a pool it did not have at start is imported, and says which; abandoned pools do not count', async () => {
    let pools = ['host-pool']; // imported by the daemon from its cache file as it started: not ours to wait for
    const fake = client(() => pools);
    const session = await prepareDaemon(fake, { readyTimeoutMs: 1000 });
    expect(session.started).toBe(true);
    expect(fake.started).toHaveLength(1);
    pools = ['host-pool', 'tank', 'other'];
    expect(await session.stop({ abandon: ['tank'] })).toEqual({ stopped: false, reason: 'zfs-fuse left running: pools still imported (other)' });
    pools = ['host-pool', 'tank'];
    expect(await session.stop({ abandon: ['tank'] })).toEqual({ stopped: true });
    expect(existsSync(session.pidFile!)).toBe(false); // its folder goes with it
  });

  it('uses a daemon that already answers and never stops it', async () => {
    const fake = { ...client(() => []), answers: async () => true };
    const session = await prepareDaemon(fake);
    expect(session.started).toBe(false);
    expect(fake.started).toEqual([]);
    expect(await session.stop()).toEqual({ stopped: false, reason: 'zfs-fuse was already running' });
  });
});

describe('zfs-fuse round trips and mount checks (recorded)', () => {
  const answering = (pools: string, calls: string[][]): Exec => async (file, args) => {
    calls.push([file, ...args]);
    return { command: file, exitCode: 0, stdout: file === 'zpool' && args[0] === 'list' ? pools : '', stderr: '' };
  };
  const options = { pool: 'tank', vdev: '/w/root.raw', root: '/w/mnt', poolProperties: {}, filesystemProperties: {} };

  // prepare() looks for /dev/fuse before it asks the daemon
  const noFuse = !existsSync('/dev/fuse');

  it.skipIf(noFuse)('lets the daemon check answer the name check right after it, and asks again once anything else ran', async () => {
    const calls: string[][] = [];
    const driver = createZfsFuseDriver({ exec: answering('', calls) });
    expect((await driver.prepare()).started).toBe(false);
    const handle = await driver.createPool(options);
    await driver.exportPool({ ...handle, tempDirs: [] });
    await driver.createPool(options);
    expect(calls.map((call) => call.slice(0, 2).join(' '))).toEqual([
      'zpool list', // the daemon check, reused by the first createPool
      'zpool create',
      'zpool export',
      'zpool list', // a new name check: other commands ran since
      'zpool create',
    ]);
  });

  it.skipIf(noFuse)('still refuses a taken name with the list the daemon check read', async () => {
    const calls: string[][] = [];
    const driver = createZfsFuseDriver({ exec: answering('tank\n', calls) });
    await driver.prepare();
    await expect(driver.createPool(options)).rejects.toThrow(/already imported on this host/);
    // the name check itself is the daemon check's list; only the refusal asks who holds the pool
    expect(calls.map((call) => call.slice(1).join(' '))).toEqual(['list -H -o name', 'list -H -o name,altroot']);
  });

  it.skipIf(noFuse)('gives up on a daemon start that hangs (Ctrl-C does not cut the start short, so a time limit does)', async () => {
    const scratch = await mkdtemp(join(tmpdir(), 'zfs-fuse-start-'));
    try {
      // no daemon answers, and the start never returns: real programs, so the real exec stops them
      await writeFile(join(scratch, 'zpool'), '#!/bin/sh\necho "connect: No such file or directory" >&2; exit 1\n', { mode: 0o755 });
      await writeFile(join(scratch, 'zfs-fuse'), '#!/bin/sh\nsleep 30\n', { mode: 0o755 });
      const driver = createZfsFuseDriver({
        exec: createExec({ killGraceMs: 200 }),
        daemon: join(scratch, 'zfs-fuse'),
        zpool: join(scratch, 'zpool'),
        startTimeoutMs: 300,
        stopTimeoutMs: 0,
        lock: { hold: (work) => work() },
      });
      await expect(driver.prepare()).rejects.toThrow(/^zfs-fuse did not start \(.*zfs-fuse --pidfile .*: no answer within 300 ms, stopped\)/);
      expect(execFileSync('ps', ['-eo', 'args='], { encoding: 'utf8' })).not.toContain(`${scratch}/zfs-fuse`);
    } finally {
      await rm(scratch, { recursive: true, force: true });
    }
  });

  it('refuses to go on when a dataset is not really mounted where the image needs it', async () => {
    // the daemon says yes to everything, but nothing appears in the kernel's mount table
    const calls: string[][] = [];
    const exec: Exec = async (file, args) => {
      calls.push([file, ...args]);
      const stdout = args[0] === 'get' ? 'tank/root\tmountpoint\tlegacy\tinherited from tank\ntank/root\tcanmount\ton\tdefault\n' : '';
      return { command: file, exitCode: 0, stdout, stderr: '' };
    };
    const driver = createZfsFuseDriver({ exec });
    const handle: PoolHandle = { driver: 'zfs-fuse', pool: 'tank', name: 'tank', vdev: '/w/root.raw', root: '/w/mnt', tempDirs: [] };
    await expect(driver.mountDatasets(handle, [{ dataset: 'tank/root', mount: '/' }])).rejects.toThrow(
      "zfs-fuse did not mount tank/root (at /w/mnt) after setting the mountpoint",
    );
    // and sets the mountpoint back before giving up
    expect(calls.at(-1)).toEqual(['zfs', 'inherit', 'mountpoint', 'tank/root']);
  });
});

const daemon = findProgram('zfs-fuse');
const isRoot = process.getuid?.() === 0;
const skipReason = daemon === undefined ? 'zfs-fuse is not installed' : !isRoot ? 'not running as root' : '';
if (skipReason) console.warn(`skipping the zfs-fuse integration tests: ${skipReason}`);

describe.skipIf(skipReason !== '')(`zfs-fuse driver on a real pool${skipReason ? ` (skipped: ${skipReason})` : ''}`, () => {
  const pool = `t${process.pid}`;
  const exec = createExec();
  let driver: ZfsDriver;
  let session: ZfsSession | undefined;
  let work: string;
  const handles: PoolHandle[] = [];

  const run = (file: string, args: string[]): string => execFileSync(file, args, { encoding: 'utf8' });
  const poolsImported = (): string[] => run('zpool', ['list', '-H', '-o', 'name']).split('\n').filter(Boolean);
  const mountsOfPool = (): string[] =>
    run('mount', []).split('\n').filter((line) => line.startsWith(`${pool} `) || line.startsWith(`${pool}/`));
  const property = (name: string, dataset: string): string =>
    run('zfs', ['get', '-H', '-o', 'value,source', name, dataset]).trim();

  const release = async (handle: PoolHandle, state: MountState): Promise<void> => {
    await driver.unmountAll(handle, state);
    await driver.exportPool(handle);
    handles.splice(handles.indexOf(handle), 1);
  };

  beforeAll(async () => {
    driver = selectDriver('zfs-fuse', { exec });
    session = await driver.prepare();
    work = await mkdtemp(join(tmpdir(), 'zfs-fuse-test-'));
    await writeFile(join(work, 'root.raw'), '');
    // sparse: 128 MiB of holes
    await truncate(join(work, 'root.raw'), 128 * 1024 * 1024);
  }, 60_000);

  afterAll(async () => {
    // whatever failed, leave nothing imported, mounted or running
    for (const handle of handles) {
      await driver.unmountAll(handle, { mounted: [], restore: [] }, { force: true }).catch(() => undefined);
      await driver.exportPool(handle, { force: true }).catch(() => undefined);
    }
    // a create that should have failed and did not leaves the pool without a handle; the name is this file's alone
    if (session && poolsImported().includes(pool)) await execa('zpool', ['export', '-f', pool], { reject: false });
    if (session) {
      // a pool that could not be exported may go down with the daemon this test started
      const result = await session.stop({ abandon: handles.map((handle) => handle.name) });
      // left running only while another user's pools are imported in it
      if (session.started && !result.stopped) console.warn(result.reason);
    }
    // never recurse into a file system that failed to unmount
    if (work && (await mountsUnder(work)).length === 0) await rm(work, { recursive: true, force: true });
  }, 60_000);

  it('creates the pool on a sparse file with datasets, and exports it importable', async () => {
    const adapted = driver.adaptProperties({ ...SEED_DEFAULTS, datasets: {} }, SEED_DEFAULTS);
    const handle = await driver.createPool({
      pool,
      vdev: join(work, 'root.raw'),
      poolProperties: adapted.pool,
      filesystemProperties: adapted.filesystem,
    });
    handles.push(handle);
    expect(handle.name).toBe(pool);
    // parents before children, as the create-pool stage does
    await driver.createDataset(handle, `${pool}/root`, {});
    await driver.createDataset(handle, `${pool}/root/var`, {});
    await driver.createDataset(handle, `${pool}/nix`, {});
    await driver.createDataset(handle, `${pool}/nix/store`, {});
    await driver.createDataset(handle, `${pool}/home`, { 'com.example:owner': 'alice', compression: 'gzip' });
    await driver.createDataset(handle, `${pool}/srv`, { canmount: 'noauto' });
    expect(mountsOfPool()).toEqual([]);
    await driver.exportPool(handle);
    handles.splice(handles.indexOf(handle), 1);
    expect(poolsImported()).not.toContain(pool);
    // the temporary altroot is gone
    await expect(stat(handle.root)).rejects.toThrow();
    const listing = run('zpool', ['import', '-d', work]);
    expect(listing).toMatch(new RegExp(`pool: ${pool}\\b`));
    expect(listing).toMatch(/state: ONLINE/);
  }, 60_000);

  it('refuses a pool name that is already imported', async () => {
    const root = await mkdtemp(join(work, 'mnt-'));
    const handle = await driver.importPool({ pool, vdev: join(work, 'root.raw'), root });
    handles.push(handle);
    await expect(driver.importPool({ pool, vdev: join(work, 'root.raw'), root })).rejects.toThrow(/already imported/);
    await release(handle, { mounted: [], restore: [] });
  }, 60_000);

  it('imports a working copy (not the original beside it), mounts, writes, unmounts and exports', async () => {
    // the working copy sits next to its checkpoint: same pool, same guid
    run('cp', ['--sparse=always', join(work, 'root.raw'), join(work, 'work.raw')]);
    const root = await mkdtemp(join(work, 'mnt-'));
    const handle = await driver.importPool({ pool, vdev: join(work, 'work.raw'), root });
    handles.push(handle);
    expect(run('zpool', ['status', pool])).toContain('work.raw');
    const state = await driver.mountDatasets(handle, [
      { dataset: `${pool}/home`, mount: '/home' },
      { dataset: `${pool}/root`, mount: '/' },
      { dataset: `${pool}/nix`, mount: '/nix' },
      { dataset: `${pool}/srv`, mount: '/srv' },
    ]);
    expect(state.mounted.map((entry) => entry.path)).toEqual([root, `${root}/nix`, `${root}/srv`, `${root}/home`]);
    expect(mountsOfPool().map((line) => line.split(' ')[0]).sort()).toEqual(
      [`${pool}/home`, `${pool}/nix`, `${pool}/root`, `${pool}/srv`].sort(),
    );
    // datasets without a mount stay unmounted, as with openzfs
    expect(property('mounted', `${pool}/nix/store`)).toMatch(/^no/);
    expect(property('mounted', `${pool}/root/var`)).toMatch(/^no/);
    await writeFile(join(root, 'hello'), 'root\n');
    await mkdir(join(root, 'nix/store/abc-x'), { recursive: true });
    await writeFile(join(root, 'nix/store/abc-x/file'), 'nix\n');
    await writeFile(join(root, 'home/notes'), 'home\n');
    await writeFile(join(root, 'srv/data'), 'srv\n');
    await release(handle, state);
    expect(mountsOfPool()).toEqual([]);
    expect(poolsImported()).not.toContain(pool);
    await rm(root, { recursive: true });
  }, 60_000);

  it('exports a pool whose import Ctrl-C stopped after the daemon had finished it', async () => {
    const controller = new AbortController();
    const abortable = createExec({ signal: controller.signal });
    // Ctrl-C arrives as `zpool import` returns: the pool is imported, the command reported as stopped
    const interrupted: Exec = async (file, args, options) => {
      const result = await abortable(file, args, options);
      if (args[0] !== 'import') return result;
      controller.abort();
      throw new CommandError({ command: result.command, exitCode: -1, signal: 'SIGTERM', tail: [], aborted: true });
    };
    const root = await mkdtemp(join(work, 'mnt-'));
    await expect(selectDriver('zfs-fuse', { exec: interrupted }).importPool({ pool, vdev: join(work, 'work.raw'), root })).rejects.toThrow(CommandError);
    expect(poolsImported()).not.toContain(pool);
    expect(await mountsUnder(root)).toEqual([]);
    await rm(root, { recursive: true });
  }, 60_000);

  it('mounts under a root reached through a symbolic link (the kernel lists the resolved path)', async () => {
    const real = await mkdtemp(join(work, 'real-'));
    const link = join(work, 'link');
    await symlink(real, link);
    await mkdir(join(real, 'mnt'));
    const handle = await driver.importPool({ pool, vdev: join(work, 'work.raw'), root: join(link, 'mnt') });
    handles.push(handle);
    const state = await driver.mountDatasets(handle, [
      { dataset: `${pool}/root`, mount: '/' },
      { dataset: `${pool}/home`, mount: '/home' },
    ]);
    expect(await readFile(join(link, 'mnt/home/notes'), 'utf8')).toBe('home\n');
    expect(mountsOfPool().map((line) => line.split(' ')[2]).sort()).toEqual([join(real, 'mnt'), join(real, 'mnt/home')]);
    await release(handle, state);
    expect(mountsOfPool()).toEqual([]);
    await rm(link);
    await rm(real, { recursive: true });
  }, 60_000);

  it('re-imports with the files and properties, mountpoints back to what they were', async () => {
    const check = async (vdev: string, expectFiles: boolean): Promise<void> => {
      const root = await mkdtemp(join(work, 'mnt-'));
      const handle = await driver.importPool({ pool, vdev, root });
      handles.push(handle);
      expect(property('mountpoint', `${pool}`)).toBe('legacy\tlocal');
      for (const name of ['root', 'root/var', 'nix', 'nix/store', 'home', 'srv']) {
        expect(property('mountpoint', `${pool}/${name}`)).toBe(`legacy\tinherited from ${pool}`);
      }
      expect(property('com.example:owner', `${pool}/home`)).toBe('alice\tlocal');
      expect(property('compression', `${pool}/home`)).toBe('gzip\tlocal');
      expect(property('atime', `${pool}/root`)).toBe(`off\tinherited from ${pool}`);
      expect(property('canmount', `${pool}/srv`)).toBe('noauto\tlocal');
      const state = await driver.mountDatasets(handle, [
        { dataset: `${pool}/root`, mount: '/' },
        { dataset: `${pool}/nix`, mount: '/nix' },
        { dataset: `${pool}/home`, mount: '/home' },
      ]);
      if (expectFiles) {
        expect(await readFile(join(root, 'hello'), 'utf8')).toBe('root\n');
        expect(await readFile(join(root, 'nix/store/abc-x/file'), 'utf8')).toBe('nix\n');
        expect(await readFile(join(root, 'home/notes'), 'utf8')).toBe('home\n');
      } else {
        await expect(stat(join(root, 'hello'))).rejects.toThrow();
      }
      await release(handle, state);
      await rm(root, { recursive: true });
    };
    // the checkpoint was never touched; the working copy has the files
    await check(join(work, 'root.raw'), false);
    await check(join(work, 'work.raw'), true);
    expect(mountsOfPool()).toEqual([]);
    expect(poolsImported()).not.toContain(pool);
  }, 60_000);

  /** Tests that stop the daemon with SIGSTOP do so only to one this file started and nobody else uses. */
  const ownIdleDaemon = async (): Promise<number | undefined> =>
    session?.started && (await otherZfsUsers()).length === 0 ? Number(run('pgrep', ['-o', '-x', 'zfs-fuse']).trim()) : undefined;

  it('a hung daemon fails a command within the limit, later ones at once, and a new check finds it again', async (ctx) => {
    const pid = await ownIdleDaemon();
    if (pid === undefined) return ctx.skip();
    const commands: string[] = [];
    const real = createExec({ killGraceMs: 200 });
    const recording: Exec = (file, args, options) => {
      commands.push(`${file} ${args.join(' ')}`);
      return real(file, args, options);
    };
    const impatient = createZfsFuseDriver({ exec: recording, commandTimeoutMs: 3000 });
    // a stopped daemon still accepts connections, so the client waits for an answer as with a deadlock
    process.kill(pid, 'SIGSTOP');
    try {
      await expect(impatient.isImported(pool)).rejects.toThrow(
        /^zfs-fuse did not answer `\S*zpool list -H -o name` within 3 s: the daemon looks hung .*pkill -KILL -x zfs-fuse/,
      );
      expect(commands).toEqual(['zpool list -H -o name']);
      // later commands are not run at all, so a cleanup does not wait out the limit once per command
      await expect(impatient.isImported(pool)).rejects.toThrow(/^zfs-fuse is not answering, so `\S*zpool list -H -o name` was not run/);
      expect(commands).toHaveLength(1);
      // the other driver of this process talks to the same daemon: it does not wait out its own limit either
      await expect(driver.isImported(pool)).rejects.toThrow(/^zfs-fuse is not answering/);
    } finally {
      process.kill(pid, 'SIGCONT');
    }
    expect((await impatient.prepare()).started).toBe(false);
    expect(await impatient.isImported(pool)).toBe(false);
  }, 60_000);

  it('watch calls back once when the daemon stops answering, and not while it answers', async (ctx) => {
    const pid = await ownIdleDaemon();
    if (pid === undefined) return ctx.skip();
    const hung: Error[] = [];
    const pause = (ms: number): Promise<void> => new Promise((done) => setTimeout(done, ms));
    // it asks every quarter of the limit (0.8 s), each ask given 3.2 s, far more than a healthy daemon
    // needs even on a loaded machine (a hang limit, not a timing); watched past the first verdict (4 s)
    const healthy = createZfsFuseDriver({ exec: createExec({ killGraceMs: 200 }), commandTimeoutMs: 3200 });
    const stopHealthy = healthy.watch!((error) => hung.push(error));
    await pause(5000);
    stopHealthy();
    // an ask the healthy watcher sent just before may still be under way (or waiting its turn on the host
    // lock): the lock's queue is first come, first served, so once this one answers, it has too (else it
    // would meet the stopped daemon below, and its 3.2 s verdict would be the one reported)
    await healthy.isImported('no-such-pool');
    expect(hung).toEqual([]);
    const watcher = createZfsFuseDriver({ exec: createExec({ killGraceMs: 200 }), commandTimeoutMs: 400 });
    process.kill(pid, 'SIGSTOP');
    try {
      const stop = watcher.watch!((error) => hung.push(error));
      for (let i = 0; i < 100 && hung.length === 0; i++) await pause(100);
      await pause(500);
      stop();
      expect(hung).toHaveLength(1);
      expect(hung[0]!.message).toMatch(/^zfs-fuse did not answer `\S*zpool list -H -o name` within 0.4 s/);
    } finally {
      process.kill(pid, 'SIGCONT');
      // a new daemon check clears this process's hung verdict, which the tests after this one must not inherit
      await createZfsFuseDriver({ exec }).prepare().catch(() => undefined);
    }
    // answering again: a driver with the default limit finds it (and starts no other)
    expect((await createZfsFuseDriver({ exec }).prepare()).started).toBe(false);
  }, 60_000);

  it('registers as a ZFS user only once a last user stopping the daemon has let go of the users lock', async () => {
    const marker = join(ZFS_USERS_DIR, String(process.pid));
    // stands in for a build whose release is stopping the daemon
    // it holds the lock until its stdin closes, however slow the machine
    const holder = execa('flock', [ZFS_USERS_LOCK_FILE, 'sh', '-c', 'echo held; read x || true'], { stdin: 'pipe' });
    await new Promise((held) => holder.stdout!.once('data', held));
    // a driver that is not zfs-fuse: its release never looks for a dead starter's daemon to stop
    const stub: ZfsDriver = { ...driver, name: 'openzfs', prepare: async () => ({ started: false, stop: async () => ({ stopped: false }) }) };
    let registered = false;
    const using = useZfs(stub, exec, () => undefined).then((use) => {
      registered = true;
      return use;
    });
    try {
      await new Promise((later) => setTimeout(later, 500));
      expect(registered).toBe(false);
      expect(existsSync(marker)).toBe(false);
    } finally {
      // let go whatever failed: every later build registers under this lock
      holder.stdin!.end();
      await holder.catch(() => undefined);
    }
    const use = await using;
    try {
      expect(existsSync(marker)).toBe(true);
    } finally {
      await use.release();
    }
    expect(existsSync(marker)).toBe(false);
  }, 60_000);

  it('removes the pid-file folder a build killed while stopping its daemon left behind, once a new daemon starts', async (ctx) => {
    // the host's real starter record: left alone when a real build has one
    if (existsSync(STARTER_FILE)) return ctx.skip();
    const dead = deadPid();
    const leftover = await mkdtemp(join(tmpdir(), 'zfs-fuse-'));
    await writeFile(join(leftover, 'zfs-fuse.pid'), `${dead}\n`);
    await writeFile(STARTER_FILE, `${dead}\n${join(leftover, 'zfs-fuse.pid')}\n`);
    const fresh = await mkdtemp(join(tmpdir(), 'zfs-fuse-'));
    // stands in for the daemon this build starts (pid file in its own new folder)
    const stub: ZfsDriver = { ...driver, prepare: async () => ({ started: true, pidFile: join(fresh, 'zfs-fuse.pid'), stop: async () => ({ stopped: true }) }) };
    try {
      const use = await useZfs(stub, exec, () => undefined);
      expect(existsSync(leftover)).toBe(false);
      expect(readFileSync(STARTER_FILE, 'utf8')).toBe(`${process.pid}\n${join(fresh, 'zfs-fuse.pid')}\n`);
      await use.release();
      expect(existsSync(STARTER_FILE)).toBe(false);
    } finally {
      await rm(STARTER_FILE, { force: true });
      await rm(leftover, { recursive: true, force: true });
      await rm(fresh, { recursive: true, force: true });
    }
  }, 60_000);

  it('a build that started the daemon leaves it running while other builds are registered, says so, and keeps the starter record', async (ctx) => {
    // the host's real starter record: left alone when a real build has one
    if (existsSync(STARTER_FILE)) return ctx.skip();
    const other = execa('sleep', ['120']); // stands in for another build: a live pid registered as a ZFS user
    const otherMarker = join(ZFS_USERS_DIR, String(other.pid));
    let stops = 0;
    const stub: ZfsDriver = {
      ...driver,
      prepare: async () => ({
        started: true,
        stop: async () => {
          stops += 1;
          return { stopped: true };
        },
      }),
    };
    try {
      const use = await useZfs(stub, exec, () => undefined);
      await writeFile(otherMarker, 'x');
      const notes: string[] = [];
      await use.release((level, message) => notes.push(`${level} ${message}`));
      expect(stops).toBe(0);
      expect(notes).toEqual([`info left the zfs-fuse daemon running: builds ${other.pid} still use it`]);
      // the last of those builds finds the record and stops the daemon once this process has ended
      expect(readFileSync(STARTER_FILE, 'utf8').split('\n')[0]).toBe(String(process.pid));
    } finally {
      other.kill();
      await other.catch(() => undefined);
      await rm(otherMarker, { force: true });
      await rm(STARTER_FILE, { force: true });
    }
  }, 60_000);

  it('really refuses what the property table says it cannot set', async () => {
    const scratch = join(work, 'scratch.raw');
    const cases: [Record<string, string>, Record<string, string>][] = [
      [{}, { acltype: 'posixacl' }],
      [{}, { xattr: 'sa' }],
      [{}, { compression: 'lz4' }],
      [{ 'feature@async_destroy': 'enabled' }, {}],
    ];
    for (const [poolProperties, filesystemProperties] of cases) {
      await writeFile(scratch, '');
      await truncate(scratch, 128 * 1024 * 1024);
      await expect(
        driver.createPool({ pool, vdev: scratch, poolProperties, filesystemProperties: { mountpoint: 'legacy', ...filesystemProperties } }),
      ).rejects.toThrow(/zpool create/);
      expect(poolsImported()).not.toContain(pool);
    }
  }, 60_000);
});

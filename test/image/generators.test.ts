import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Datasets } from '../../tasks/image/generators.ts';
import {
  compressionAt,
  configurationNix,
  datasetCreationOrder,
  fileSystemsNix,
  formatExtension,
  mountOrder,
  nixosConfigLayout,
  outputFileNames,
  qemuImgConvertArgs,
  unmountOrder,
  inMountOrder,
  compareMounts,
  zfsCreateArgs,
  zpoolCreateArgs,
} from '../../tasks/image/generators.ts';

const datasets: Datasets = {
  'tank/var/log/journal': { mount: '/var/log/journal' },
  'tank/home': { mount: '/home', properties: { quota: '1G' } },
  'tank/root': { mount: '/' },
  'tank/var': { properties: { canmount: 'off' } },
  'tank/var/log': { mount: '/var/log' },
  'tank/nix': { mount: '/nix' },
  'tank/aaaaaaaaaaaa': {},
};

describe('datasetCreationOrder', () => {
  it('creates parents before children, by depth then name', () => {
    expect(datasetCreationOrder(datasets).map((d) => d.name)).toEqual([
      'tank/aaaaaaaaaaaa',
      'tank/home',
      'tank/nix',
      'tank/root',
      'tank/var',
      'tank/var/log',
      'tank/var/log/journal',
    ]);
  });

  it('keeps mounts and properties, with {} for none', () => {
    const [home] = datasetCreationOrder({ 'tank/home': { mount: '/home', properties: { quota: '1G' } } });
    expect(home).toEqual({ name: 'tank/home', mount: '/home', properties: { quota: '1G' } });
    expect(datasetCreationOrder({ 'tank/x': {} })[0]?.properties).toEqual({});
  });
});

describe('mountOrder and unmountOrder', () => {
  it('mounts shortest path first, ties by path, and skips datasets without a mount', () => {
    expect(mountOrder(datasets).map((d) => d.mount)).toEqual(['/', '/nix', '/home', '/var/log', '/var/log/journal']);
    expect(mountOrder(datasets)[0]).toEqual({ name: 'tank/root', mount: '/' });
  });

  it('breaks ties between equally long mounts by path', () => {
    const same: Datasets = { 'tank/s': { mount: '/srv' }, 'tank/n': { mount: '/nix' }, 'tank/o': { mount: '/opt' } };
    expect(mountOrder(same).map((d) => d.mount)).toEqual(['/nix', '/opt', '/srv']);
    // code-unit order, whatever the locale: upper case before lower case
    expect(inMountOrder([{ mount: '/b' }, { mount: '/B' }, { mount: '/a' }]).map((m) => m.mount)).toEqual(['/B', '/a', '/b']);
  });

  it('orders what the drivers mount and unmount the same way', () => {
    const recorded = [{ mount: '/var' }, { mount: '/' }, { mount: '/nix' }, { mount: '/var/log' }];
    expect(inMountOrder(recorded).map((m) => m.mount)).toEqual(['/', '/nix', '/var', '/var/log']);
    expect([...recorded].sort((a, b) => compareMounts(b.mount, a.mount)).map((m) => m.mount)).toEqual(unmountOrder({
      'tank/a': { mount: '/var' }, 'tank/b': { mount: '/' }, 'tank/c': { mount: '/nix' }, 'tank/d': { mount: '/var/log' },
    }).map((d) => d.mount));
  });

  it('unmounts in exactly the reverse order', () => {
    expect(unmountOrder(datasets)).toEqual([...mountOrder(datasets)].reverse());
    expect(unmountOrder(datasets).map((d) => d.mount)).toEqual(['/var/log/journal', '/var/log', '/home', '/nix', '/']);
  });
});

describe('compressionAt', () => {
  const datasets: Datasets = {
    'tank/root': { mount: '/' },
    'tank/root/var': { mount: '/var', properties: { compression: 'gzip' } },
    'tank/root/var/log': { mount: '/var/log' },
    'tank/root/var/cache': { mount: '/var/cache', properties: { compression: 'off' } },
    'tank/nix': { mount: '/nix' },
  };
  const pool = { compression: 'lz4' };

  it.each([
    ['/etc/motd', 'lz4'], // the root dataset inherits the pool's
    ['/var/lib/x', 'gzip'], // its own
    ['/var/log/messages', 'gzip'], // inherited from tank/root/var
    ['/var/cache/big', 'off'], // a child that turns it off
    ['/variable', 'lz4'], // a prefix of the name, not of the path
    ['/nix/store', 'lz4'],
  ])('%s is written with %s', (imagePath, expected) => {
    expect(compressionAt(datasets, pool, imagePath)).toBe(expected);
  });

  it('is off when nothing sets it', () => {
    expect(compressionAt({ 'tank/root': { mount: '/' } }, {}, '/etc/motd')).toBe('off');
  });
});

describe('argv', () => {
  it('builds zpool create with the altroot, -o pool and -O file system properties sorted by name, pool and vdev', () => {
    const create = {
      pool: 'tank',
      vdev: '/dev/loop3',
      altroot: '/w/mnt',
      poolProperties: { autoexpand: 'on', ashift: '12' },
      filesystemProperties: { mountpoint: 'legacy', compression: 'on' },
    };
    expect(zpoolCreateArgs(create)).toEqual([
      'create', '-R', '/w/mnt', '-o', 'ashift=12', '-o', 'autoexpand=on', '-O', 'compression=on', '-O', 'mountpoint=legacy', 'tank', '/dev/loop3',
    ]);
    // openzfs: a temporary name in the host; zfs-fuse: the root dataset's mountpoint as -m
    expect(zpoolCreateArgs({ ...create, tempName: 'tank-build-1' }).slice(0, 5)).toEqual(['create', '-R', '/w/mnt', '-t', 'tank-build-1']);
    expect(zpoolCreateArgs({ ...create, mountpoint: 'legacy', filesystemProperties: {} }).slice(3)).toEqual(['-m', 'legacy', '-o', 'ashift=12', '-o', 'autoexpand=on', 'tank', '/dev/loop3']);
    expect(zpoolCreateArgs({ ...create, vdev: '-odd.raw' }).at(-1)).toBe('./-odd.raw');
  });

  it('builds zfs create -p with one -o per property', () => {
    expect(zfsCreateArgs('tank/var/log', { compression: 'zstd', 'com.sun:auto-snapshot': 'true' })).toEqual([
      'create', '-p', '-o', 'com.sun:auto-snapshot=true', '-o', 'compression=zstd', 'tank/var/log',
    ]);
    expect(zfsCreateArgs('tank/root')).toEqual(['create', '-p', 'tank/root']);
  });

  it('converts with qemu-img from raw, compressing only qcow2-compressed', () => {
    expect(qemuImgConvertArgs('qcow2', 'a.raw', 'b.qcow2')).toEqual(['convert', '-f', 'raw', '-O', 'qcow2', 'a.raw', 'b.qcow2']);
    expect(qemuImgConvertArgs('qcow2-compressed', 'a', 'b')).toEqual(['convert', '-f', 'raw', '-O', 'qcow2', '-c', 'a', 'b']);
    expect(qemuImgConvertArgs('vpc', 'a', 'b')).toEqual(['convert', '-f', 'raw', '-O', 'vpc', '-o', 'force_size=on', 'a', 'b']);
    expect(qemuImgConvertArgs('raw', 'a', 'b')).toEqual(['convert', '-f', 'raw', '-O', 'raw', 'a', 'b']);
  });
});

describe('extensions and output names', () => {
  it.each([
    ['raw', 'img'],
    ['qcow2', 'qcow2'],
    ['qcow2-compressed', 'qcow2'],
    ['vdi', 'vdi'],
    ['vpc', 'vhd'],
  ] as const)('%s -> .%s', (format, ext) => {
    expect(formatExtension(format)).toBe(ext);
    expect(outputFileNames(format)).toEqual({ boot: `nixos.boot.${ext}`, root: `nixos.root.${ext}` });
  });
});

describe('Nix files, checked with the real nix-instantiate', () => {
  let dir = '';
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'generators-test-'));
  });
  afterAll(() => {
    rmSync(dir, { recursive: true, force: true });
  });

  const nixInstantiate = (...args: string[]) =>
    execFileSync('nix-instantiate', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  const write = (name: string, text: string) => {
    const path = join(dir, name);
    writeFileSync(path, text);
    return path;
  };

  it('writes fileSystems that parse and evaluate to the datasets', () => {
    const file = write('zfs-filesystems.nix', fileSystemsNix(datasets));
    nixInstantiate('--parse', file);
    expect(JSON.parse(nixInstantiate('--eval', '--strict', '--json', file))).toEqual({
      fileSystems: {
        '/': { device: 'tank/root', fsType: 'zfs' },
        '/nix': { device: 'tank/nix', fsType: 'zfs' },
        '/home': { device: 'tank/home', fsType: 'zfs' },
        '/var/log': { device: 'tank/var/log', fsType: 'zfs' },
        '/var/log/journal': { device: 'tank/var/log/journal', fsType: 'zfs' },
      },
    });
  });

  it('escapes quotes, backslashes and interpolation in mount points', () => {
    const tricky = ['/srv/"q"', '/srv/back\\slash', '/srv/${builtins.abort "x"}', '/srv/$${y}', '/srv/end$', '/srv/a b', '/srv/line\nbreak', "/srv/''"];
    const weird: Datasets = Object.fromEntries(tricky.map((mount, i) => [`tank/d${i}`, { mount }]));
    const file = write('tricky.nix', fileSystemsNix(weird));
    nixInstantiate('--parse', file);
    const { fileSystems } = JSON.parse(nixInstantiate('--eval', '--strict', '--json', file)) as { fileSystems: Record<string, unknown> };
    expect(Object.keys(fileSystems).sort()).toEqual([...tricky].sort());
    expect(fileSystems['/srv/"q"']).toEqual({ device: 'tank/d0', fsType: 'zfs' });
  });

  it('writes an empty fileSystems module when nothing mounts', () => {
    const file = write('empty.nix', fileSystemsNix({ 'tank/x': {} }));
    expect(JSON.parse(nixInstantiate('--eval', '--strict', '--json', file))).toEqual({});
  });

  it('writes a configuration.nix that imports the files next to it', () => {
    const { configuration, fileSystems, userConfiguration } = nixosConfigLayout;
    write(fileSystems, fileSystemsNix(datasets));
    write(userConfiguration, '{ ... }: { networking.hostName = "demo"; }\n');
    const imports = (text: string) => {
      const file = write(configuration, text);
      nixInstantiate('--parse', file);
      const expr = '{ f }: map toString (import f).imports';
      return JSON.parse(nixInstantiate('--eval', '--strict', '--json', '-E', expr, '--argstr', 'f', file)) as unknown;
    };
    expect(imports(configurationNix(fileSystems, userConfiguration))).toEqual([join(dir, fileSystems), join(dir, userConfiguration)]);
    expect(imports(configurationNix(fileSystems, null))).toEqual([join(dir, fileSystems)]);
  });

  it('refuses a file name that is not a valid Nix path literal', () => {
    expect(() => configurationNix('a b.nix', null)).toThrow(/relative file name/);
    expect(() => configurationNix('x.nix', '../escape.nix')).toThrow(/relative file name/);
    expect(() => configurationNix('/etc/nixos/x.nix', null)).toThrow(/relative file name/);
  });
});

// End to end: real qemu-img, parted, mkfs.vfat, mtools, zfs-fuse and nix build an image pair,
// then tools the project does not provide check it.
import { execa } from 'execa';
import { copyFile, lstat, mkdtemp, readdir, readFile, readlink, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { DEMO, imageProject, ran, withImportedPool, type ImageProject } from '../helpers/image.ts';
import { demoSystem, leftovers, uniquePool } from '../helpers/reliability.ts';

const POOL = uniquePool('itank');
const BIOS_BOOT = '21686148-6449-6E6F-744E-656564454649';
const ESP = 'C12A7328-F81F-11D2-BA4B-00A0C93EC93B';
const mtools = { env: { MTOOLS_SKIP_CHECK: '1' } };

let project: ImageProject;
let scratch: string;
beforeAll(async () => {
  project = await imageProject(POOL);
  scratch = await mkdtemp(path.join(tmpdir(), 'image-check-'));
});
// every build and every inspection below must leave nothing behind, not only the first
afterEach(async () => {
  expect(await leftovers(project.dir, [POOL])).toEqual({ pools: [], mounts: [], loops: [] });
});
afterAll(async () => {
  await project.cleanup();
  await rm(scratch, { recursive: true, force: true });
});

describe('a fresh build of the image pair', () => {
  let first: Awaited<ReturnType<ImageProject['build']>>;
  beforeAll(async () => {
    first = await project.build();
  });

  it('runs every stage and writes the outputs', async () => {
    expect(first.exitCode, first.stderr).toBe(0);
    expect(ran(first.statuses)).toEqual(
      ['convert:boot', 'convert:root', 'create-disks:boot', 'create-disks:root', 'create-pool', 'export-pool', 'install', 'install:esp', 'mount', 'partition', 'post-vm', 'system'].sort(),
    );
    const names = (await execa('ls', ['-A', project.out])).stdout.split('\n').sort();
    expect(names).toEqual(['image-info.json', 'nixos.boot.img', 'nixos.root.img']); // no partial files
  });

  it('warns of each seed default zfs-fuse cannot set (a --json notice)', () => {
    const notices = first.stdout.split('\n').filter(Boolean).map((line) => JSON.parse(line) as { type: string; level?: string; message?: string })
      .filter((event) => event.type === 'notice' && event.level === 'warn').map((event) => event.message);
    for (const property of ['acltype=posixacl', 'xattr=sa']) {
      expect(notices.some((message) => message?.includes(`create-pool: zfs-fuse: dropped the default rootPoolFilesystemProperties.${property}`)), property).toBe(true);
    }
  });

  it('qemu-img sees two raw disks of the configured sizes', async () => {
    for (const [file, mib] of [['nixos.boot.img', 40], ['nixos.root.img', 128]] as const) {
      const info = JSON.parse((await execa('qemu-img', ['info', '--output=json', path.join(project.out, file)])).stdout) as { format: string; 'virtual-size': number };
      expect(info.format).toBe('raw');
      expect(info['virtual-size']).toBe(mib * 1024 * 1024);
    }
  });

  it('the boot disk has the seed partition layout (sfdisk)', async () => {
    const table = JSON.parse((await execa('sfdisk', ['-J', path.join(project.out, 'nixos.boot.img')])).stdout) as {
      partitiontable: { label: string; sectorsize: number; partitions: { start: number; size: number; type: string; name: string }[] };
    };
    expect(table.partitiontable.label).toBe('gpt');
    expect(table.partitiontable.partitions.map(({ start, size, type, name }) => ({ start, size, type, name }))).toEqual([
      { start: 2048, size: 2048, type: BIOS_BOOT, name: 'no-fs' },
      // 2 MiB to 1 MiB before the end of 40 MiB: 37 MiB of 512-byte sectors
      { start: 4096, size: 37 * 2048, type: ESP, name: 'ESP' },
    ]);
  });

  it('the ESP is FAT labelled ESP and holds the loader entry (mtools)', async () => {
    const image = `${path.join(project.out, 'nixos.boot.img')}@@${4096 * 512}`;
    expect((await execa('mlabel', ['-s', '-i', image, '::'], mtools)).stdout).toMatch(/Volume label is ESP/);
    const entry = (await execa('mtype', ['-i', image, '::/loader/entries/nixos-demo.conf'], mtools)).stdout;
    const info = JSON.parse(await readFile(path.join(project.out, 'image-info.json'), 'utf8')) as { system: { toplevel: string } };
    expect(entry).toContain(`init=${info.system.toplevel}/init`);
    // the loader itself: installed only under NIXOS_INSTALL_BOOTLOADER=1, on a /boot bootctl accepts
    expect((await execa('mtype', ['-i', image, '::/loader/loader.conf'], mtools)).stdout).toContain('# boot loader installed (NIXOS_INSTALL_BOOTLOADER=1)');
    expect((await execa('minfo', ['-i', image, '::'], mtools)).stdout).toMatch(/disk type="FAT32/);
  });

  it('image-info.json describes both disks, the system, the pool and the datasets as they are', async () => {
    const info = JSON.parse(await readFile(path.join(project.out, 'image-info.json'), 'utf8')) as {
      name: string; format: string; pool: { name: string; driver: string };
      disks: Record<string, { file: string; virtualSize: number; fileSize: number; allocatedBytes: number; sha256: string }>;
      system: { toplevel: string }; datasets: Record<string, { mount: string; properties: Record<string, string> }>;
    };
    expect(info).toMatchObject({ name: 'itest', format: 'raw', pool: { name: POOL, driver: 'zfs-fuse' } });
    expect(Object.keys(info.disks).sort()).toEqual(['boot', 'root']);
    for (const [disk, file] of [['boot', 'nixos.boot.img'], ['root', 'nixos.root.img']] as const) {
      const d = info.disks[disk]!;
      expect(d.file).toBe(file);
      const full = path.join(project.out, file);
      const qemu = JSON.parse((await execa('qemu-img', ['info', '--output=json', full])).stdout) as { 'virtual-size': number };
      expect(d.virtualSize).toBe(qemu['virtual-size']);
      const { size, blocks } = await stat(full);
      expect(d.fileSize).toBe(size);
      expect(d.allocatedBytes).toBe(blocks * 512);
      expect(d.sha256).toBe((await execa('sha256sum', [full])).stdout.split(' ')[0]);
    }
    // the toplevel the demo expression builds, found by nix itself
    const toplevel = await demoSystem();
    expect(info.system.toplevel).toBe(toplevel);
    // the datasets as configured, in the config's order
    const configured = JSON.parse(await readFile(project.configFile, 'utf8')) as { datasets: Record<string, { mount: string; properties?: Record<string, string> }> };
    expect(Object.keys(info.datasets)).toEqual(Object.keys(configured.datasets));
    for (const [name, dataset] of Object.entries(configured.datasets)) {
      expect(info.datasets[name]).toEqual({ mount: dataset.mount, properties: dataset.properties ?? {} });
    }
  });

  it('the root pool was exported, imports without -f, and holds the installed system', async () => {
    const info = JSON.parse(await readFile(path.join(project.out, 'image-info.json'), 'utf8')) as { system: { toplevel: string } };
    const mounts = { [`${POOL}/root`]: '/', [`${POOL}/root/var`]: '/var', [`${POOL}/nix`]: '/nix', [`${POOL}/home`]: '/home' };
    await withImportedPool(path.join(project.out, 'nixos.root.img'), POOL, mounts, async (root) => {
      const datasets = (await execa('zfs', ['list', '-H', '-o', 'name', '-r', POOL])).stdout.split('\n').sort();
      expect(datasets).toEqual([POOL, `${POOL}/home`, `${POOL}/nix`, `${POOL}/root`, `${POOL}/root/var`]);
      const get = async (prop: string, ds: string) => (await execa('zfs', ['get', '-H', '-o', 'value', prop, ds])).stdout;
      expect(await get('atime', `${POOL}/nix`)).toBe('off');
      expect(await get('com.example:backup', `${POOL}/home`)).toBe('yes');
      expect(await get('compression', `${POOL}/home`)).toBe('gzip');
      expect(await get('compression', `${POOL}/root`)).toBe('on');
      expect((await execa('zpool', ['get', 'autoexpand', POOL])).stdout).toMatch(new RegExp(`^${POOL}\\s+autoexpand\\s+on\\s`, 'm'));
      // configuration.nix imports the generated file systems and the user's file
      const configuration = await readFile(path.join(root, 'etc/nixos/configuration.nix'), 'utf8');
      expect(configuration).toMatch(/imports = \[ \.\/zfs-filesystems\.nix \.\/user-configuration\.nix \]/);
      const fileSystems = await readFile(path.join(root, 'etc/nixos/zfs-filesystems.nix'), 'utf8');
      expect(fileSystems).toContain(`fileSystems."/nix" = { device = "${POOL}/nix"; fsType = "zfs"; };`);
      await execa('nix-instantiate', ['--parse', path.join(root, 'etc/nixos/configuration.nix')]);
      // contents with their modes
      expect(await readFile(path.join(root, 'etc/motd'), 'utf8')).toBe('hello from the image\n');
      expect((await stat(path.join(root, 'etc/motd'))).mode & 0o777).toBe(0o640);
      expect((await stat(path.join(root, 'srv/tree'))).mode & 0o777).toBe(0o750);
      expect(await readFile(path.join(root, 'srv/tree/sub/file.txt'), 'utf8')).toBe('nested\n');
      // the closure, registered and intact, and the profile
      await stat(path.join(root, info.system.toplevel.slice(1), 'bin/switch-to-configuration'));
      const verify = await execa('nix-store', ['--store', root, '--verify', '--check-contents'], { all: true });
      expect(verify.exitCode).toBe(0);
      expect(verify.all).not.toMatch(/error|corrupt|missing/i);
      const valid = await execa('nix-store', ['--store', root, '--query', '--requisites', info.system.toplevel]);
      expect(valid.stdout.split('\n')).toContain(info.system.toplevel);
      const profile = path.join(root, 'nix/var/nix/profiles/system');
      expect(await readlink(path.join(path.dirname(profile), await readlink(profile)))).toBe(info.system.toplevel);
      await lstat(path.join(root, 'etc/NIXOS'));
      // activation ran in the chroot, /boot (the ESP's mount point) was left empty
      await lstat(path.join(root, 'etc/NIXOS-ACTIVATED'));
      expect((await execa('ls', ['-A', path.join(root, 'boot')])).stdout).toBe('');
    });
  });

});

describe('incremental rebuilds', () => {
  it('a rerun with no change runs nothing', async () => {
    const again = await project.build();
    expect(again.exitCode).toBe(0);
    expect(ran(again.statuses)).toEqual([]);
    expect(again.statuses['create-pool']).toBe('cached');
  });

  it('asking for exactly the file system properties zfs-fuse sets reruns only post-vm (image-info.json drops its warnings)', async () => {
    const dropped = async () => (JSON.parse(await readFile(path.join(project.out, 'image-info.json'), 'utf8')) as { pool: { droppedByDriver: string[] } }).pool.droppedByDriver;
    expect(await dropped()).not.toEqual([]);
    await project.configure({ rootPoolFilesystemProperties: { atime: 'off', compression: 'on', mountpoint: 'legacy' } });
    try {
      const explicit = await project.build();
      expect(explicit.exitCode, explicit.stderr).toBe(0);
      expect(ran(explicit.statuses)).toEqual(['post-vm']);
      expect(await dropped()).toEqual([]);
    } finally {
      await project.configure({ rootPoolFilesystemProperties: undefined });
    }
    const back = await project.build();
    expect(ran(back.statuses)).toEqual([]);
  });

  it('a format change reruns only convert and post-vm', async () => {
    await project.configure({ format: 'qcow2' });
    const result = await project.build();
    expect(result.exitCode, result.stderr).toBe(0);
    expect(ran(result.statuses)).toEqual(['convert:boot', 'convert:root', 'post-vm']);
    const info = JSON.parse((await execa('qemu-img', ['info', '--output=json', path.join(project.out, 'nixos.root.qcow2')])).stdout) as { format: string };
    expect(info.format).toBe('qcow2');
  });

  it('a configFile change reruns install and what follows on the root disk, not create-pool, and leaves the boot disk as it was', async () => {
    const bootSha = async () => (JSON.parse(await readFile(path.join(project.out, 'image-info.json'), 'utf8')) as { disks: { boot: { sha256: string } } }).disks.boot.sha256;
    const before = await bootSha();
    await execa('sh', ['-c', `echo '# changed' >> ${path.join(project.dir, 'configuration.nix')}`]);
    const result = await project.build();
    expect(result.exitCode, result.stderr).toBe(0);
    // install wrote the same /boot: install:esp is keyed on that content, so the FAT is not rewritten
    expect(ran(result.statuses)).toEqual(['convert:root', 'export-pool', 'install', 'mount', 'post-vm']);
    expect(result.statuses['create-pool']).toBe('cached');
    expect(await bootSha()).toBe(before);
  });

  it('a bootSize change reruns the boot chain only: not create-pool, not install', async () => {
    await project.configure({ bootSize: 48 });
    const result = await project.build();
    expect(result.exitCode, result.stderr).toBe(0);
    expect(ran(result.statuses)).toEqual(['convert:boot', 'create-disks:boot', 'install:esp', 'partition', 'post-vm']);
  });

  it('a new system toplevel reruns install and what follows, nothing before it', async () => {
    const other = await demoSystem('--argstr', 'label', 'other');
    await project.configure({ system: { toplevel: other } });
    const result = await project.build();
    expect(result.exitCode, result.stderr).toBe(0);
    expect(ran(result.statuses)).toEqual(['convert:boot', 'convert:root', 'export-pool', 'install', 'install:esp', 'mount', 'post-vm', 'system']);
    for (const id of ['create-disks:boot', 'create-disks:root', 'partition', 'create-pool']) expect(result.statuses[id]).toBe('cached');
    const info = JSON.parse(await readFile(path.join(project.out, 'image-info.json'), 'utf8')) as { system: { toplevel: string } };
    expect(info.system.toplevel).toBe(other);
    // the image holds the new system: its closure registered and intact, the profile pointing at it
    const rootRaw = path.join(scratch, 'other-root.raw');
    await execa('qemu-img', ['convert', '-f', 'qcow2', '-O', 'raw', path.join(project.out, 'nixos.root.qcow2'), rootRaw]);
    const mounts = { [`${POOL}/root`]: '/', [`${POOL}/root/var`]: '/var', [`${POOL}/nix`]: '/nix', [`${POOL}/home`]: '/home' };
    await withImportedPool(rootRaw, POOL, mounts, async (root) => {
      const profile = path.join(root, 'nix/var/nix/profiles/system');
      expect(await readlink(path.join(path.dirname(profile), await readlink(profile)))).toBe(other);
      const closure = (await execa('nix-store', ['--store', root, '--query', '--requisites', other])).stdout.split('\n');
      expect(closure).toContain(other);
      const verify = await execa('nix-store', ['--store', root, '--verify', '--check-contents'], { all: true });
      expect(verify.all).not.toMatch(/error|corrupt|missing/i);
    });
  });

  it('every format converts and holds the same disks as raw', async () => {
    await project.configure({ format: 'raw' });
    expect((await project.build()).exitCode).toBe(0);
    const raw = { boot: path.join(scratch, 'boot.raw'), root: path.join(scratch, 'root.raw') };
    await execa('cp', ['--sparse=always', path.join(project.out, 'nixos.boot.img'), raw.boot]);
    await execa('cp', ['--sparse=always', path.join(project.out, 'nixos.root.img'), raw.root]);
    const expected = { vdi: ['vdi', 'vdi'], vpc: ['vpc', 'vhd'], 'qcow2-compressed': ['qcow2', 'qcow2'], qcow2: ['qcow2', 'qcow2'] } as const;
    for (const [format, [qemuFormat, ext]] of Object.entries(expected)) {
      await project.configure({ format });
      const result = await project.build();
      expect(result.exitCode, `${format}: ${result.stderr}`).toBe(0);
      // qcow2 may still be cached from the tests above; nothing before convert may run
      for (const id of ran(result.statuses)) expect(['convert:boot', 'convert:root', 'post-vm']).toContain(id);
      for (const disk of ['boot', 'root'] as const) {
        const file = path.join(project.out, `nixos.${disk}.${ext}`);
        const info = JSON.parse((await execa('qemu-img', ['info', '--output=json', file])).stdout) as { format: string; 'virtual-size': number };
        expect(info.format).toBe(qemuFormat);
        // exactly the raw disk's size: a VHD rounded up to its geometry leaves the GPT backup header
        // and ZFS's end labels short of the end
        expect(info['virtual-size'], `${format} ${disk}`).toBe((await stat(raw[disk])).size);
        if (qemuFormat !== 'vpc') await execa('qemu-img', ['check', file]);
        // same guest-visible bytes as the raw disk
        const compare = await execa('qemu-img', ['compare', '-f', 'raw', '-F', qemuFormat, raw[disk], file], { reject: false });
        expect(compare.exitCode, compare.stdout + compare.stderr).toBe(0);
      }
      // compressed clusters are what tells qcow2-compressed from plain qcow2 (qemu-img check counts them)
      if (qemuFormat === 'qcow2') {
        const check = JSON.parse((await execa('qemu-img', ['check', '--output=json', path.join(project.out, `nixos.root.${ext}`)])).stdout) as { 'compressed-clusters'?: number; 'allocated-clusters': number };
        expect(check['allocated-clusters']).toBeGreaterThan(0);
        if (format === 'qcow2-compressed') expect(check['compressed-clusters']).toBeGreaterThan(0);
        else expect(check['compressed-clusters'] ?? 0).toBe(0);
      }
    }
  });

  it('a forced convert that writes other bytes reruns post-vm, so image-info.json keeps the outputs\' sha256', async () => {
    // a VDI header carries a random UUID: the same convert never writes the same bytes twice
    await project.configure({ format: 'vdi' });
    try {
      expect((await project.build()).exitCode).toBe(0);
      const forced = await project.run('run', 'convert:root', '--force');
      expect(forced.exitCode, forced.stderr).toBe(0);
      const result = await project.build();
      expect(ran(result.statuses)).toEqual(['post-vm']);
      const info = JSON.parse(await readFile(path.join(project.out, 'image-info.json'), 'utf8')) as { disks: Record<string, { file: string; sha256: string }> };
      for (const disk of Object.values(info.disks)) {
        expect(disk.sha256).toBe((await execa('sha256sum', [path.join(project.out, disk.file)])).stdout.split(' ')[0]);
      }
    } finally {
      await project.configure({ format: 'qcow2' }); // as the loop above left it, for the next test
    }
  });

  it('postVM sees the new disks and image-info.json in place; a background job it leaves is stopped and logged', async () => {
    const marker = `sleep 29.${process.pid}`;
    // what postVM sees is recorded beside the images: the sha256 of the disks against image-info.json
    const hook = [
      `${marker} &`,
      `for f in "$bootDiskImage" "$rootDiskImage"; do sha256sum "$f" | cut -d' ' -f1; done > "$out/seen.txt"`,
      `grep -o '"sha256": "[0-9a-f]*"' image-info.json | cut -d'"' -f4 > "$out/recorded.txt"`,
    ].join('\n');
    await project.configure({ postVM: hook });
    try {
      const result = await project.build();
      expect(result.exitCode, result.stderr).toBe(0);
      expect(ran(result.statuses)).toEqual(['post-vm']);
      const seen = await readFile(path.join(project.out, 'seen.txt'), 'utf8');
      expect(seen.trim().split('\n')).toHaveLength(2);
      expect(seen).toBe(await readFile(path.join(project.out, 'recorded.txt'), 'utf8'));
      expect((await execa('pgrep', ['-f', marker], { reject: false })).stdout).toBe('');
      expect((await project.run('logs', 'post-vm')).stdout).toMatch(/left processes running in its process group \d+; stopping them/);
    } finally {
      await execa('pkill', ['-f', marker], { reject: false });
      await project.configure({ postVM: '' });
    }
  });

  it('a postVM hook that exits non-zero fails post-vm and the build, and leaves the new set in place, its image-info.json matching', async () => {
    await project.configure({ postVM: 'echo "hook broke" >&2; exit 3' });
    try {
      const result = await project.build();
      expect(result.exitCode).toBe(1);
      expect(result.statuses['post-vm']).toBe('failed');
      expect((await project.run('logs', 'post-vm')).stdout).toContain('hook broke');
      const info = JSON.parse(await readFile(path.join(project.out, 'image-info.json'), 'utf8')) as { disks: Record<string, { file: string; sha256: string }> };
      for (const disk of Object.values(info.disks)) {
        expect(disk.sha256).toBe((await execa('sha256sum', [path.join(project.out, disk.file)])).stdout.split(' ')[0]);
      }
    } finally {
      await project.configure({ postVM: '' });
    }
    // the failed post-vm published nothing: without the hook, the earlier entry is used again
    const again = await project.build();
    expect(again.exitCode, again.stderr).toBe(0);
    expect(ran(again.statuses)).toEqual([]);
  });

  it('build convert alone converts into the cache and leaves the output folder alone; files no longer produced stay there', async () => {
    const listing = async (): Promise<Record<string, string>> => {
      const out: Record<string, string> = {};
      for (const name of (await readdir(project.out)).sort()) {
        const info = await stat(path.join(project.out, name));
        out[name] = `${info.ino} ${info.size} ${info.mtimeMs}`;
      }
      return out;
    };
    const before = await listing();
    expect(Object.keys(before)).toContain('nixos.root.qcow2');
    await project.configure({ format: 'vpc' });
    try {
      const converted = await project.run('build', 'convert');
      expect(converted.exitCode, converted.stderr).toBe(0);
      expect(await listing()).toEqual(before);
      expect((await project.build()).exitCode).toBe(0);
      const after = await listing();
      expect(Object.keys(after)).toEqual(expect.arrayContaining(['nixos.boot.vhd', 'nixos.root.vhd', 'nixos.boot.qcow2', 'nixos.root.qcow2']));
      // the earlier qcow2 files are untouched; image-info.json describes the vhd pair
      expect(after['nixos.root.qcow2']).toBe(before['nixos.root.qcow2']);
      const info = JSON.parse(await readFile(path.join(project.out, 'image-info.json'), 'utf8')) as { format: string };
      expect(info.format).toBe('vpc');
    } finally {
      await project.configure({ format: 'qcow2' });
    }
  });

  it('an expression in the folder that holds the cache and the output is not rehashed with them', async () => {
    // a config, its system.nix, ./cache and ./out in one folder, as a user's project would have them
    const expression = path.join(project.dir, 'system.nix');
    await copyFile(DEMO.system, expression);
    await project.configure({ system: { expression } });
    const moved = await project.build();
    expect(moved.exitCode, moved.stderr).toBe(0);
    expect(moved.statuses['system']).toBe('ran'); // its inputs changed (the path); same toplevel, so nothing after it runs
    expect(ran(moved.statuses), moved.stdout).toEqual(['system']);
    await project.configure({ format: 'vdi' });
    const converted = await project.build();
    expect(converted.exitCode, converted.stderr).toBe(0);
    // new entries in ./cache and new files in ./out are not the expression's inputs
    expect(converted.statuses['system']).toBe('cached');
    expect(ran(converted.statuses)).toEqual(['convert:boot', 'convert:root', 'post-vm']);
  });
});

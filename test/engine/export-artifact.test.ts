// Outputs reach the user's folder whole or not at all: a hard link or a sparse copy under a hidden
// name, then a rename; what a failed or killed export leaves is removed.
import { execa } from 'execa';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, rm, stat, statfs, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { exportArtifact, exportArtifacts } from '../../lib/caching/export-artifact.ts';

let dir: string;
let other: string | undefined;
beforeEach(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'export-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
  if (other) await rm(other, { recursive: true, force: true });
  other = undefined;
});

describe('exportArtifact', () => {
  it('hard-links on the same file system, and does nothing when the output already is the artifact', async () => {
    const source = path.join(dir, 'artifact.raw');
    await writeFile(source, 'disk');
    const out = path.join(dir, 'out', 'nixos.root.img');
    expect(await exportArtifact(source, out)).toBe(true);
    expect((await stat(out)).ino).toBe((await stat(source)).ino);
    expect(await exportArtifact(source, out)).toBe(false);
    expect(await readdir(path.dirname(out))).toEqual(['nixos.root.img']);
  });

  it.skipIf(!existsSync('/dev/shm'))('copies across file systems keeping holes', async (ctx) => {
    other = await mkdtemp('/dev/shm/export-');
    if ((await stat(other)).dev === (await stat(dir)).dev) return ctx.skip(); // one file system here
    const source = path.join(other, 'artifact.raw');
    await execa('truncate', ['-s', '64M', source]);
    await execa('dd', ['if=/dev/urandom', `of=${source}`, 'bs=1M', 'count=1', 'seek=10', 'conv=notrunc', 'status=none']);
    const out = path.join(dir, 'nixos.root.img');
    expect(await exportArtifact(source, out)).toBe(true);
    expect((await stat(out)).size).toBe(64 * 1024 * 1024);
    expect((await stat(out)).blocks * 512).toBeLessThan(8 * 1024 * 1024);
    expect((await execa('cmp', [source, out], { reject: false })).exitCode).toBe(0);
    expect(await readdir(dir)).toEqual(['nixos.root.img']);
  });

  it.skipIf(!existsSync('/dev/shm'))('does not copy an unchanged artifact across file systems again, but does once it changed', async (ctx) => {
    other = await mkdtemp('/dev/shm/export-');
    if ((await stat(other)).dev === (await stat(dir)).dev) return ctx.skip(); // one file system here
    const source = path.join(other, 'artifact.raw');
    await writeFile(source, 'disk one');
    const out = path.join(dir, 'nixos.root.img');
    expect(await exportArtifact(source, out)).toBe(true);
    const copied = await stat(out);
    expect(Math.abs(copied.mtimeMs - (await stat(source)).mtimeMs)).toBeLessThan(1);
    // every cached build exports again: an unchanged copy stays as it is
    expect(await exportArtifact(source, out)).toBe(false);
    expect((await stat(out)).ino).toBe(copied.ino);
    // a changed artifact (same size, new mtime) is copied again
    await new Promise((later) => setTimeout(later, 20));
    await writeFile(source, 'disk two');
    expect(await exportArtifact(source, out)).toBe(true);
    expect(await readFile(out, 'utf8')).toBe('disk two');
  });

  it.skipIf(!existsSync('/dev/shm'))('stops a copy across file systems on abort, leaving nothing in the output folder', async (ctx) => {
    other = await mkdtemp('/dev/shm/export-');
    if ((await stat(other)).dev === (await stat(dir)).dev) return ctx.skip(); // one file system here
    const source = path.join(other, 'artifact.raw');
    await execa('truncate', ['-s', '64M', source]);
    await expect(exportArtifact(source, path.join(dir, 'nixos.root.img'), AbortSignal.abort())).rejects.toThrow();
    expect(await readdir(dir)).toEqual([]);
  });

  it('refuses a copy across file systems that would not fit, with the numbers, before writing any of it', async () => {
    other = await mkdtemp(path.join(tmpdir(), 'export-small-'));
    await execa('mount', ['-t', 'tmpfs', '-o', 'size=4m', 'tmpfs', other]);
    try {
      const source = path.join(dir, 'artifact.raw');
      await execa('truncate', ['-s', '1G', source]); // large but sparse: only its 8 MiB of data count
      await execa('dd', ['if=/dev/urandom', `of=${source}`, 'bs=1M', 'count=8', 'seek=100', 'conv=notrunc', 'status=none']);
      const out = path.join(other, 'nixos.root.img');
      await expect(exportArtifact(source, out)).rejects.toThrow(
        new RegExp(`^not enough space for a copy of artifact\\.raw in ${other}: needs 8\\.0 MiB, \\d+(\\.\\d)? (KiB|MiB) free$`),
      );
      expect(await readdir(other)).toEqual([]);
      // a sparse disk whose data fits is copied, holes and all
      await execa('truncate', ['-s', '1G', source]);
      await execa('fallocate', ['--punch-hole', '--offset', '0', '--length', String(1024 * 1024 * 1024), source]);
      await execa('dd', ['if=/dev/urandom', `of=${source}`, 'bs=1M', 'count=1', 'seek=100', 'conv=notrunc', 'status=none']);
      expect(await exportArtifact(source, out)).toBe(true);
      expect((await stat(out)).size).toBe(1024 * 1024 * 1024);
      expect(await readdir(other)).toEqual(['nixos.root.img']);
    } finally {
      await execa('umount', [other], { reject: false });
    }
  });

  it('tries a copy that looks too big on btrfs mounted with compress-force, where it fits, and refuses it without', async () => {
    other = await mkdtemp(path.join(tmpdir(), 'export-btrfs-'));
    const image = path.join(other, 'fs.img');
    const mnt = path.join(other, 'mnt');
    await execa('truncate', ['-s', '160M', image]);
    await execa('mkfs.btrfs', ['-q', image]);
    await mkdir(mnt);
    await execa('mount', ['-o', 'loop', image, mnt]); // the loop device goes with the unmount
    try {
      const source = path.join(dir, 'artifact.raw');
      // 120 MiB of text: more than the ~80 MiB free, a few KiB once compressed
      await execa('sh', ['-c', `yes nixos | head -c ${120 * 1024 * 1024} > '${source}'`]);
      const info = await statfs(mnt);
      expect(info.bavail * info.bsize).toBeLessThan(120 * 1024 * 1024);
      const out = path.join(mnt, 'nixos.root.img');
      // btrfs without compression stores what it is given: refused early, with the numbers
      await expect(exportArtifact(source, out)).rejects.toThrow(/^not enough space for a copy of artifact\.raw in .*: needs 120\.0 MiB, /);
      await execa('mount', ['-o', 'remount,compress-force=zstd', mnt]);
      expect(await exportArtifact(source, out)).toBe(true);
      expect((await execa('cmp', [source, out], { reject: false })).exitCode).toBe(0);
    } finally {
      // never leave it mounted: afterEach removes the folder, and would delete through the mount
      if ((await execa('umount', [mnt], { reject: false })).exitCode !== 0) await execa('umount', ['-l', mnt], { reject: false });
    }
  });

  it('leaves no hidden temporary when the rename fails', async () => {
    const source = path.join(dir, 'artifact.raw');
    await writeFile(source, 'disk');
    // a folder in the way: the rename over it fails
    const out = path.join(dir, 'out', 'nixos.root.img');
    await mkdir(path.join(out, 'sub'), { recursive: true });
    await expect(exportArtifact(source, out)).rejects.toThrow();
    expect(await readdir(path.join(dir, 'out'))).toEqual(['nixos.root.img']);
  });

  it("removes the temporaries of dead runs, not a live run's", async () => {
    const source = path.join(dir, 'artifact.raw');
    await writeFile(source, 'disk');
    const out = path.join(dir, 'out');
    await mkdir(out);
    const ended = execa('true');
    const dead = ended.pid!;
    await ended;
    const live = execa('sleep', ['30']);
    try {
      await writeFile(path.join(out, `.nixos.root.img.partial-${dead}`), 'half');
      await writeFile(path.join(out, `.nixos.root.img.partial-${live.pid}`), 'in progress');
      expect(await exportArtifact(source, path.join(out, 'nixos.root.img'))).toBe(true);
      expect((await readdir(out)).sort()).toEqual([`.nixos.root.img.partial-${live.pid}`, 'nixos.root.img']);
      expect(await readFile(path.join(out, 'nixos.root.img'), 'utf8')).toBe('disk');
    } finally {
      live.kill('SIGKILL');
      await live.catch(() => undefined);
    }
  });
});

describe('exportArtifacts', () => {
  it('changes a set of outputs together: when one cannot be placed, none of them changes', async () => {
    const out = path.join(dir, 'out');
    await mkdir(out);
    for (const name of ['nixos.boot.img', 'nixos.root.img', 'image-info.json']) await writeFile(path.join(out, name), 'old');
    const fresh = async (name: string) => {
      await writeFile(path.join(dir, name), 'new');
      return { source: path.join(dir, name), destination: path.join(out, name) };
    };
    const boot = await fresh('nixos.boot.img');
    const root = await fresh('nixos.root.img');
    // the description's source is gone: found only after both disks were staged
    await expect(exportArtifacts([boot, root, { source: path.join(dir, 'missing.json'), destination: path.join(out, 'image-info.json') }])).rejects.toThrow(/missing\.json/);
    expect((await readdir(out)).sort()).toEqual(['image-info.json', 'nixos.boot.img', 'nixos.root.img']);
    for (const name of await readdir(out)) expect(await readFile(path.join(out, name), 'utf8')).toBe('old');
    // all there: all change, and only what differs counts as written
    const info = await fresh('image-info.json');
    expect(await exportArtifacts([boot, root, info])).toEqual([boot.destination, root.destination, info.destination]);
    for (const name of await readdir(out)) expect(await readFile(path.join(out, name), 'utf8')).toBe('new');
    expect(await exportArtifacts([boot, root, info])).toEqual([]);
  });
});

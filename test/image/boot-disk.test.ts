import { mkdir, mkdtemp, rm, stat, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CommandError } from '../../lib/execution/command-error.ts';
import { createExec } from '../../lib/execution/exec.ts';
import {
  BIOS_BOOT_TYPE,
  ESP_TYPE,
  MIN_BOOT_SIZE_MIB,
  findEsp,
  formatEsp,
  formatEspArgs,
  listEspTree,
  parseSfdiskJson,
  partitionBootDisk,
  partitionOffsetBytes,
  readEspFile,
  readEspLabel,
  readPartitions,
  writeEspTree,
} from '../../tasks/image/boot-disk.ts';
import type { DiskPartition } from '../../tasks/image/boot-disk.ts';

const MiB = 1024 * 1024;
const exec = createExec();
let dir: string;

beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'boot-disk-'));
});
afterAll(() => rm(dir, { recursive: true, force: true }));

/** A sparse raw file of `mib` MiB, like create-disks makes. */
async function sparseDisk(name: string, mib: number): Promise<string> {
  const file = path.join(dir, name);
  await writeFile(file, '');
  await truncate(file, mib * MiB);
  return file;
}

describe('argv builders', () => {
  const esp: DiskPartition = { number: 2, start: 4096, size: 124928, sectorSize: 512, type: ESP_TYPE, name: 'ESP', uuid: undefined };

  it('passes mkfs.vfat the offset in sectors and the size in KiB blocks', () => {
    expect(formatEspArgs('/x/boot.raw', esp)).toEqual([
      '-F', '32', '-n', 'ESP', '-S', '512', '-h', '4096', '--offset=4096', '/x/boot.raw', '62464',
    ]);
    expect(partitionOffsetBytes(esp)).toBe(2 * MiB);
  });

  it('refuses a table that is not GPT', () => {
    expect(() => parseSfdiskJson('{"partitiontable":{"label":"dos","partitions":[]}}')).toThrow(/GPT/);
  });
});

describe('boot disk on a plain file', () => {
  let file: string;
  let partitions: DiskPartition[];
  let esp: DiskPartition;
  let offset: number;

  beforeAll(async () => {
    file = await sparseDisk('boot.raw', 64);
    await partitionBootDisk(exec, file);
    partitions = await readPartitions(exec, file);
    esp = findEsp(partitions);
    offset = partitionOffsetBytes(esp);
    await formatEsp(exec, file, esp);
  });

  it('lays out the seed partitions with exact sectors, types and names', () => {
    expect(partitions.map(({ number, start, size, sectorSize, type, name }) => ({ number, start, size, sectorSize, type, name }))).toEqual([
      { number: 1, start: 2048, size: 2048, sectorSize: 512, type: BIOS_BOOT_TYPE, name: 'no-fs' },
      // 64 MiB = 131072 sectors; the ESP starts at 2 MiB and leaves 1 MiB free at the end.
      { number: 2, start: 4096, size: 131072 - 4096 - 2048, sectorSize: 512, type: ESP_TYPE, name: 'ESP' },
    ]);
  });

  it('keeps the file sparse and its size unchanged', async () => {
    const info = await stat(file);
    expect(info.size).toBe(64 * MiB);
    expect(info.blocks * 512).toBeLessThan(8 * MiB);
  });

  it('makes a FAT32 labelled ESP that mtools reads, leaving the GPT intact', async () => {
    expect(await readEspLabel(exec, file, offset)).toBe('ESP');
    const { stdout } = await exec('minfo', ['-i', `${file}@@${offset}`], { env: { MTOOLS_SKIP_CHECK: '1' }, quiet: true });
    expect(stdout).toMatch(/disk type="FAT32/);
    expect(stdout).toMatch(/big size: 124928 sectors/);
    expect(await listEspTree(exec, file, offset)).toEqual([]);
    // mkfs wrote only inside partition 2: both GPT copies still parse and verify.
    expect(await readPartitions(exec, file)).toEqual(partitions);
    await exec('sfdisk', ['--verify', file], { quiet: true });
  });

  it('writes a folder tree into the FAT root and reads it back', async () => {
    const tree = path.join(dir, 'esp-tree');
    await mkdir(path.join(tree, 'loader', 'entries'), { recursive: true });
    await mkdir(path.join(tree, 'EFI', 'nixos'), { recursive: true });
    await mkdir(path.join(tree, 'empty'), { recursive: true });
    await writeFile(path.join(tree, 'loader', 'loader.conf'), 'timeout 3\ndefault nixos-demo.conf\n');
    await writeFile(path.join(tree, 'loader', 'entries', 'nixos-demo.conf'), 'title NixOS\n');
    await writeFile(path.join(tree, 'EFI', 'nixos', 'Mixed-Case-Long-Name.efi'), 'kernel\n');
    await writeEspTree(exec, file, offset, tree);

    expect(await listEspTree(exec, file, offset)).toEqual([
      'EFI/',
      'EFI/nixos/',
      'EFI/nixos/Mixed-Case-Long-Name.efi',
      'empty/',
      'loader/',
      'loader/entries/',
      'loader/entries/nixos-demo.conf',
      'loader/loader.conf',
    ]);
    expect(await readEspFile(exec, file, offset, 'loader/loader.conf')).toBe('timeout 3\ndefault nixos-demo.conf\n');
    expect(await readEspFile(exec, file, offset, '/EFI/nixos/Mixed-Case-Long-Name.efi')).toBe('kernel\n');

    // A second write overwrites files and merges folders.
    await writeFile(path.join(tree, 'loader', 'loader.conf'), 'timeout 5\n');
    await writeEspTree(exec, file, offset, tree);
    expect(await readEspFile(exec, file, offset, 'loader/loader.conf')).toBe('timeout 5\n');
    expect(await readEspLabel(exec, file, offset)).toBe('ESP');
  });

  it('fails on a file that is not in the FAT', async () => {
    await expect(readEspFile(exec, file, offset, 'missing.txt')).rejects.toBeInstanceOf(CommandError);
  });
});

describe('minimum boot size', () => {
  it(`works at ${MIN_BOOT_SIZE_MIB} MiB`, async () => {
    const file = await sparseDisk('min.raw', MIN_BOOT_SIZE_MIB);
    await partitionBootDisk(exec, file);
    const esp = findEsp(await readPartitions(exec, file));
    await formatEsp(exec, file, esp);
    const offset = partitionOffsetBytes(esp);
    const tree = path.join(dir, 'min-tree');
    await mkdir(path.join(tree, 'loader'), { recursive: true });
    await writeFile(path.join(tree, 'loader', 'loader.conf'), 'timeout 3\n');
    await writeEspTree(exec, file, offset, tree);
    expect(await readEspFile(exec, file, offset, 'loader/loader.conf')).toBe('timeout 3\n');
  });

  it(`refuses ${MIN_BOOT_SIZE_MIB - 1} MiB before running mkfs.vfat`, async () => {
    const file = await sparseDisk('small.raw', MIN_BOOT_SIZE_MIB - 1);
    await partitionBootDisk(exec, file);
    const esp = findEsp(await readPartitions(exec, file));
    await expect(formatEsp(exec, file, esp)).rejects.toThrow(`at least ${MIN_BOOT_SIZE_MIB} MiB`);
  });
});

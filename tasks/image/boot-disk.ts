import { readdir } from 'node:fs/promises';
import { resolve } from 'node:path';
import * as z from 'zod';
import type { Exec } from '../../lib/execution/types.ts';

/**
 * Smallest `bootSize` (MiB) for which the boot layout holds a working FAT32 ESP.
 * Measured with parted 3.5, mkfs.fat 4.2 and mtools 4.0.32 on sparse files of
 * 33..40 MiB: the ESP is bootSize - 3 MiB (1 MiB before the BIOS boot partition,
 * 1 MiB for it, 1 MiB kept free at the end); at 35 MiB mkfs.vfat -F 32 makes
 * 64,496 data clusters (fsck.fat -v), under FAT32's 65,525 minimum, so mtools reads it as FAT16 and
 * mcopy fails ("No directory slots"); at 36 MiB (66,512) mkfs.vfat warns
 * about nothing, mcopy/mtype round-trip and fsck.fat -n is clean.
 */
export const MIN_BOOT_SIZE_MIB = 36;

/** MiB of the boot disk that are not the ESP (see MIN_BOOT_SIZE_MIB). */
const BOOT_DISK_OVERHEAD_MIB = 3;

/** GPT type GUID of a BIOS boot partition (parted's bios_grub flag). */
export const BIOS_BOOT_TYPE = '21686148-6449-6E6F-744E-656564454649';

/** GPT type GUID of an EFI System Partition (parted's esp flag). */
export const ESP_TYPE = 'C12A7328-F81F-11D2-BA4B-00A0C93EC93B';

/** Volume label of the ESP's FAT file system. */
const ESP_LABEL = 'ESP';

/** Environment for mtools: an image file has no partition table at the FAT's offset to check. */
export const MTOOLS_ENV: Readonly<Record<string, string>> = { MTOOLS_SKIP_CHECK: '1' };

/** One partition of a disk image, as sfdisk reports it (sectors of `sectorSize` bytes). */
export interface DiskPartition {
  /** 1-based partition number, in table order. */
  readonly number: number;
  /** First sector. */
  readonly start: number;
  /** Length in sectors. */
  readonly size: number;
  /** Logical sector size of the disk, in bytes. */
  readonly sectorSize: number;
  /** Partition type GUID (upper case). */
  readonly type: string;
  /** GPT partition name ('' when unnamed). */
  readonly name: string;
  /** Unique partition GUID, when the table has one. */
  readonly uuid: string | undefined;
}

/**
 * The parted argv that lays out the boot disk as the seed does: GPT, partition 1
 * `no-fs` (1-2 MiB, bios_grub), partition 2 `ESP` (2 MiB to 1 MiB before the end),
 * both checked for optimal alignment. Unlike the seed, partition 2 gets the esp
 * flag so that its type is EFI System and firmware finds it.
 */
function partitionBootDiskArgs(file: string): string[] {
  return [
    '--script', file, '--',
    'mklabel', 'gpt',
    'mkpart', 'no-fs', '1MiB', '2MiB',
    'set', '1', 'bios_grub', 'on',
    'align-check', 'optimal', '1',
    'mkpart', 'ESP', 'fat32', '2MiB', '-1MiB',
    'set', '2', 'esp', 'on',
    'align-check', 'optimal', '2',
    'print',
  ];
}

/** Partitions a boot disk image file (no loop device, no root). parted fails when alignment is not optimal. */
export async function partitionBootDisk(exec: Exec, file: string): Promise<void> {
  await exec('parted', partitionBootDiskArgs(file));
}

const sfdiskSchema = z.object({
  partitiontable: z.object({
    label: z.string(),
    sectorsize: z.number().int().positive().optional(),
    partitions: z
      .array(
        z.object({
          start: z.number().int().nonnegative(),
          size: z.number().int().nonnegative(),
          type: z.string(),
          uuid: z.string().optional(),
          name: z.string().optional(),
        }),
      )
      .default([]),
  }),
});

/** Parses `sfdisk -J` output into partitions; throws when it is not a GPT table. */
export function parseSfdiskJson(text: string): DiskPartition[] {
  const table = sfdiskSchema.parse(JSON.parse(text)).partitiontable;
  if (table.label !== 'gpt') throw new Error(`expected a GPT partition table, found ${table.label}`);
  // sfdisk omits sectorsize only for tables of 512-byte sectors (older util-linux).
  const sectorSize = table.sectorsize ?? 512;
  return table.partitions.map((part, index) => ({
    number: index + 1,
    start: part.start,
    size: part.size,
    sectorSize,
    type: part.type.toUpperCase(),
    name: part.name ?? '',
    uuid: part.uuid,
  }));
}

/** Reads the partition table of a disk image file with `sfdisk -J`. */
export async function readPartitions(exec: Exec, file: string): Promise<DiskPartition[]> {
  const { stdout } = await exec('sfdisk', ['-J', file], { quiet: true });
  return parseSfdiskJson(stdout);
}

/** The boot disk's ESP (by type GUID); throws when the disk has none. */
export function findEsp(partitions: readonly DiskPartition[]): DiskPartition {
  const esp = partitions.find((part) => part.type === ESP_TYPE);
  if (!esp) throw new Error('the boot disk has no EFI System Partition');
  return esp;
}

/** Byte offset of a partition in its disk image: what mtools' `FILE@@OFFSET` wants. */
export function partitionOffsetBytes(partition: DiskPartition): number {
  return partition.start * partition.sectorSize;
}

/** Smallest ESP, in sectors of `sectorSize`, that still makes a valid FAT32 (see MIN_BOOT_SIZE_MIB). */
function minEspSectors(sectorSize: number): number {
  return ((MIN_BOOT_SIZE_MIB - BOOT_DISK_OVERHEAD_MIB) * 1024 * 1024) / sectorSize;
}

/**
 * The mkfs.vfat argv that makes the FAT32 file system of a partition inside an
 * image file. `--offset` counts sectors; the trailing count is in 1 KiB blocks and
 * is required, or mkfs.vfat would run to the end of the file over the backup GPT.
 * `-h` records the partition start as hidden sectors, as mkfs.vfat does on a
 * partition device.
 */
export function formatEspArgs(file: string, partition: DiskPartition): string[] {
  const blocks = Math.floor((partition.size * partition.sectorSize) / 1024);
  return [
    '-F', '32',
    '-n', ESP_LABEL,
    '-S', String(partition.sectorSize),
    '-h', String(partition.start),
    `--offset=${partition.start}`,
    file,
    String(blocks),
  ];
}

/** Makes the ESP's FAT32 file system, labelled ESP, without mounting or a loop device. */
export async function formatEsp(exec: Exec, file: string, partition: DiskPartition): Promise<void> {
  const minimum = minEspSectors(partition.sectorSize);
  if (partition.size < minimum) {
    throw new Error(
      `ESP of ${partition.size} sectors is too small for FAT32 (needs ${minimum}; bootSize must be at least ${MIN_BOOT_SIZE_MIB} MiB)`,
    );
  }
  await exec('mkfs.vfat', formatEspArgs(file, partition));
}

/** The `-i` argument that makes mtools work on the FAT at a byte offset of an image file. */
export function mtoolsImage(file: string, offsetBytes: number): string {
  return `${file}@@${offsetBytes}`;
}

/** Turns a path inside the FAT ('loader/loader.conf' or '/loader/...') into an mtools path. */
function mtoolsPath(path: string): string {
  return `::/${path.replace(/^\/+/, '')}`;
}

/**
 * The mcopy argv that copies `entries` (absolute host paths) into the FAT's root:
 * recursive, modification times kept, existing files overwritten and existing
 * folders merged. Symbolic links are followed (FAT has none).
 */
function writeEspTreeArgs(file: string, offsetBytes: number, entries: readonly string[]): string[] {
  return ['-s', '-m', '-D', 'o', '-i', mtoolsImage(file, offsetBytes), ...entries, '::/'];
}

/** Copies the contents of a folder into the root of the FAT at `offsetBytes` of `file`, keeping the tree. */
export async function writeEspTree(exec: Exec, file: string, offsetBytes: number, dir: string): Promise<void> {
  const names = (await readdir(dir)).sort();
  if (names.length === 0) return;
  // Absolute paths: a name like `a:b` would read as a drive letter, `-x` as an option.
  const entries = names.map((name) => resolve(dir, name));
  await exec('mcopy', writeEspTreeArgs(file, offsetBytes, entries), { env: MTOOLS_ENV });
}

/** Reads one file (as text) from the FAT at `offsetBytes` of `file`; throws when it does not exist. */
export async function readEspFile(exec: Exec, file: string, offsetBytes: number, path: string): Promise<string> {
  const { stdout } = await exec('mtype', ['-i', mtoolsImage(file, offsetBytes), mtoolsPath(path)], {
    env: MTOOLS_ENV,
    quiet: true,
  });
  return stdout;
}

/** Every path in the FAT at `offsetBytes` of `file`, folders ending in '/', relative to its root, sorted. */
export async function listEspTree(exec: Exec, file: string, offsetBytes: number): Promise<string[]> {
  const list = async (recursive: boolean): Promise<string[]> => {
    const flags = recursive ? ['-/', '-b'] : ['-b'];
    const { stdout } = await exec('mdir', [...flags, '-i', mtoolsImage(file, offsetBytes), '::/'], {
      env: MTOOLS_ENV,
      quiet: true,
    });
    return stdout
      .split('\n')
      .filter((line) => line.startsWith('::/'))
      .map((line) => line.slice(3));
  };
  // `mdir -/` fails with "File ::/ not found" on an empty root, so look first.
  if ((await list(false)).length === 0) return [];
  return (await list(true)).sort();
}

/** The volume label of the FAT at `offsetBytes` of `file` ('' when it has none). */
export async function readEspLabel(exec: Exec, file: string, offsetBytes: number): Promise<string> {
  const { stdout } = await exec('mlabel', ['-s', '-i', mtoolsImage(file, offsetBytes), '::'], {
    env: MTOOLS_ENV,
    quiet: true,
  });
  const match = /Volume label is (.*)$/m.exec(stdout);
  return match?.[1]?.trim() ?? '';
}

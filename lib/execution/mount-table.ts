import { readFile, realpath } from 'node:fs/promises';
import path from 'node:path';

/** One mounted file system, as the kernel lists it for this process. */
export interface MountEntry {
  /** What is mounted: a device, or for zfs-fuse the dataset name. */
  readonly source: string;
  /** Absolute mount point, unescaped. */
  readonly target: string;
  /** File system type, e.g. `ext4`, `fuse.zfs`, `zfs`. */
  readonly fsType: string;
  /** The file system's own options (mountinfo's last field), e.g. `rw,compress-force=zstd:3`. */
  readonly options: string;
}

/** Mount points escape space, tab, newline and backslash as three octal digits. */
function unescapeMountField(field: string): string {
  return field.replace(/\\([0-7]{3})/g, (_match, octal: string) => String.fromCharCode(parseInt(octal, 8)));
}

/** Parses `/proc/self/mountinfo` text; lines it cannot read are skipped. */
export function parseMountInfo(text: string): MountEntry[] {
  const entries: MountEntry[] = [];
  for (const line of text.split('\n')) {
    const fields = line.split(' ');
    // a variable number of optional fields ends with '-'; type and source follow it
    const separator = fields.indexOf('-', 6);
    const target = fields[4];
    const fsType = fields[separator + 1];
    const source = fields[separator + 2];
    if (separator === -1 || target === undefined || fsType === undefined || source === undefined) continue;
    entries.push({ source: unescapeMountField(source), target: unescapeMountField(target), fsType, options: fields[separator + 3] ?? '' });
  }
  return entries;
}

/**
 * What is mounted in this process's mount namespace, from `/proc/self/mountinfo`:
 * the kernel's own table, so no daemon round trip and no stale answer; empty where
 * there is no /proc.
 */
export async function readMountTable(): Promise<MountEntry[]> {
  return parseMountInfo(await readFile('/proc/self/mountinfo', 'utf8').catch(() => ''));
}

/** The mount that holds `file` (an absolute path without links): the last-mounted of the longest targets above it. */
export function mountHolding(table: readonly MountEntry[], file: string): MountEntry | undefined {
  let found: MountEntry | undefined;
  for (const entry of table) {
    const prefix = entry.target === '/' ? '/' : `${entry.target}/`;
    if (file !== entry.target && !file.startsWith(prefix)) continue;
    if (!found || entry.target.length >= found.target.length) found = entry;
  }
  return found;
}

/** Mount points at or below `dir`. */
export function mountsAtOrBelow(table: readonly MountEntry[], dir: string): MountEntry[] {
  const base = dir.replace(/\/+$/, '') || '/';
  const prefix = base === '/' ? '/' : `${base}/`;
  return table.filter((entry) => entry.target === base || entry.target.startsWith(prefix));
}

/**
 * `dir` as the kernel lists mount points: symbolic links in its parent folders resolved, so a
 * cache reached through a link still finds its mounts. The last component is kept as it is: it
 * may be the mount point of a hung FUSE daemon, where a stat would hang (and `rm -r` of a link
 * removes the link, not what it points to).
 */
export async function kernelPath(dir: string): Promise<string> {
  const absolute = path.resolve(dir);
  const parent = path.dirname(absolute);
  if (parent === absolute) return absolute;
  return path.join(await realpath(parent).catch(() => parent), path.basename(absolute));
}

/** Mount points at or below `dir` (a path that may pass through symbolic links), from the kernel's table. */
export async function mountsUnder(dir: string): Promise<string[]> {
  return mountsAtOrBelow(await readMountTable(), await kernelPath(dir)).map((entry) => entry.target);
}

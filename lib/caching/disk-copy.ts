import { execFile } from 'node:child_process';
import { realpath, statfs } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { mountHolding, readMountTable } from '../execution/mount-table.ts';
import type { Exec } from '../execution/types.ts';
import { formatBytes } from '../logging/format.ts';
import { allocatedSize, ensureFreeSpace } from './free-space.ts';

const run = promisify(execFile);

/**
 * Copies a disk image keeping its holes: `cp --reflink=auto --sparse=always`, after
 * ensureRoomForCopy. Node's copyFile and streams write every zero and would fill a sparse image.
 */
export async function copyDisk(source: string, destination: string, signal?: AbortSignal): Promise<void> {
  await ensureRoomForCopy(source, destination);
  await run('cp', copyDiskArgs(source, destination), { signal });
}

/**
 * copyDisk for a task: run through the task's `exec` (logged as a command with its status and
 * time, stopped on abort), with progress every half second once it has taken a second: the
 * destination's allocated bytes against the source's.
 */
export async function copyDiskWithProgress(
  source: string,
  destination: string,
  exec: Exec,
  progress: (fraction: number, detail: string) => void,
): Promise<void> {
  const needed = await ensureRoomForCopy(source, destination);
  const started = Date.now();
  const timer = setInterval(() => {
    if (Date.now() - started < 1000 || needed === 0) return;
    allocatedSize(destination).then(
      (done) => progress(Math.min(1, done / needed), `copying ${path.basename(source)}: ${formatBytes(done)} of ${formatBytes(needed)}`),
      () => undefined,
    );
  }, 500);
  try {
    await exec('cp', copyDiskArgs(source, destination));
  } finally {
    clearInterval(timer);
  }
}

/**
 * Fails early, with the numbers, unless the destination's file system has room for the source's
 * allocated bytes (what a sparse copy writes); returns them. Better than ENOSPC half-way through.
 * On a file system that may compress what it stores, a copy that looks too big is tried anyway.
 */
export async function ensureRoomForCopy(source: string, destination: string): Promise<number> {
  const needed = await allocatedSize(source);
  const dir = path.dirname(destination);
  if (await mayCompress(dir)) return needed;
  await ensureFreeSpace(dir, needed, `a copy of ${path.basename(source)}`);
  return needed;
}

/** statfs f_type of btrfs, ZFS and bcachefs. */
const BTRFS = 0x9123683e;
const COMPRESSES_BY_PROPERTY = new Set([0x2fc12fc1, 0xca451a4e]);

/**
 * Whether `dir`'s file system may store a copy in fewer bytes than it has: ZFS and bcachefs (their
 * compression is a property, not a mount option), btrfs mounted with compress or compress-force.
 */
async function mayCompress(dir: string): Promise<boolean> {
  const type = (await statfs(dir)).type;
  if (COMPRESSES_BY_PROPERTY.has(type)) return true;
  if (type !== BTRFS) return false;
  const mount = mountHolding(await readMountTable(), await realpath(dir));
  return /(^|,)compress(-force)?(=|,|$)/.test(mount?.options ?? '');
}

/** The argv after `cp` that copyDisk runs (task logs show it as a command). */
export function copyDiskArgs(source: string, destination: string): string[] {
  return ['--reflink=auto', '--sparse=always', '--', source, destination];
}

import { execFile } from 'node:child_process';
import { statfs } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
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
 * Fails early, with the numbers, unless the destination's file system has room for the source's
 * allocated bytes (what a sparse copy writes); returns them. Better than ENOSPC half-way through.
 * On a file system that may compress what it stores, a copy that looks too big is tried anyway.
 */
export async function ensureRoomForCopy(source: string, destination: string): Promise<number> {
  const needed = await allocatedSize(source);
  const dir = path.dirname(destination);
  if (COMPRESSING.has((await statfs(dir)).type)) return needed;
  await ensureFreeSpace(dir, needed, `a copy of ${path.basename(source)}`);
  return needed;
}

/** statfs f_type of file systems that can compress (btrfs, ZFS, bcachefs): free space says too little there. */
const COMPRESSING = new Set([0x9123683e, 0x2fc12fc1, 0xca451a4e]);

/** The argv after `cp` that copyDisk runs (task logs show it as a command). */
export function copyDiskArgs(source: string, destination: string): string[] {
  return ['--reflink=auto', '--sparse=always', '--', source, destination];
}

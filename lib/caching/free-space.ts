import { stat, statfs } from 'node:fs/promises';
import path from 'node:path';
import { formatBytes } from '../logging/format.ts';

/** Bytes an unprivileged writer may still use on the file system holding `dir`. */
export async function freeBytes(dir: string): Promise<number> {
  const info = await statfs(dir);
  return info.bavail * info.bsize;
}

/** Bytes a file really occupies (holes excluded), which is what a sparse copy of it writes. */
export async function allocatedSize(file: string): Promise<number> {
  return (await stat(file)).blocks * 512;
}

/**
 * Fails early, with the numbers, when `dir` has less than `needed` bytes free: better than an
 * ENOSPC half-way through a copy. `what` says what was about to be written.
 */
export async function ensureFreeSpace(dir: string, needed: number, what: string): Promise<void> {
  const free = await freeBytes(dir);
  if (free < needed) {
    throw new Error(`not enough space for ${what} in ${path.resolve(dir)}: needs ${formatBytes(needed)}, ${formatBytes(free)} free`);
  }
}

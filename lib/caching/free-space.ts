import { lstat, readdir, stat, statfs } from 'node:fs/promises';
import path from 'node:path';
import { formatBytes } from '../logging/format.ts';

/** Bytes an unprivileged writer may still use on the file system holding `dir`. */
async function freeBytes(dir: string): Promise<number> {
  const info = await statfs(dir);
  return info.bavail * info.bsize;
}

/** Bytes a file really occupies (holes excluded), which is what a sparse copy of it writes. */
export async function allocatedSize(file: string): Promise<number> {
  return (await stat(file)).blocks * 512;
}

/** Bytes a path really occupies on disk (st_blocks), summed over a tree. */
export async function allocatedBytes(root: string): Promise<number> {
  let info;
  try {
    info = await lstat(root);
  } catch {
    return 0;
  }
  let total = info.blocks * 512;
  if (info.isDirectory()) for (const name of await readdir(root)) total += await allocatedBytes(path.join(root, name));
  return total;
}

/**
 * Fails early, with the numbers, when `dir` has less than `needed` bytes free: better than an
 * ENOSPC half-way through a copy. `what` says what was about to be written.
 */
export async function ensureFreeSpace(dir: string, needed: number, what: string): Promise<void> {
  const short = await spaceShortfall(dir, needed, what);
  if (short !== undefined) throw new Error(short);
}

/** "not enough space for `what` in `dir`: needs …, … free" when `dir` has less than `needed` bytes free. */
async function spaceShortfall(dir: string, needed: number, what: string): Promise<string | undefined> {
  const free = await freeBytes(dir);
  if (free >= needed) return undefined;
  return `not enough space for ${what} in ${path.resolve(dir)}: needs ${formatBytes(needed)}, ${formatBytes(free)} free`;
}

/**
 * Runs `write` unless `needed` bytes clearly cannot fit in `dir`. Where the destination compresses
 * (`compression` other than `off`), a shortfall is only logged and the write is tried: text that
 * compresses well fits where its size does not. If the write then runs out of space, a log line
 * says it was short before the write's own error goes on unchanged (a failed command stays one).
 */
export async function writeWithinFreeSpace(
  dir: string,
  needed: number,
  what: string,
  compression: string,
  log: (line: string) => void,
  write: () => Promise<void>,
): Promise<void> {
  const short = await spaceShortfall(dir, needed, what);
  if (short !== undefined && compression === 'off') throw new Error(short);
  if (short !== undefined) log(`${short} (before compression): copying anyway, since compression=${compression} may make it fit`);
  try {
    await write();
  } catch (error) {
    if (short !== undefined && outOfSpace(error)) log(`${short}, and it did not fit with compression=${compression} either`);
    throw error;
  }
}

/** Whether an error is ENOSPC, or a command whose output said "No space left on device". */
function outOfSpace(error: unknown): boolean {
  if ((error as NodeJS.ErrnoException).code === 'ENOSPC') return true;
  const tail = (error as { failure?: { tail?: readonly string[] } }).failure?.tail ?? [];
  return tail.some((line) => line.includes('No space left on device'));
}

import type { Stats } from 'node:fs';
import { link, mkdir, readdir, rename, rm, stat, utimes } from 'node:fs/promises';
import path from 'node:path';
import { copyDisk } from './disk-copy.ts';
import { isAlive } from './lock.ts';

/** One file to place at a user-facing path. */
export interface ExportPair {
  readonly source: string;
  readonly destination: string;
}

/**
 * Puts a published artifact at a user-facing path (`<out>/nixos.root.img`) without ever
 * showing a partial file there: hard link (or sparse copy across file systems) to a hidden
 * temporary name, then rename. Returns false when the path already is that artifact. `signal`
 * stops a copy across file systems (Ctrl-C); its temporary is removed.
 */
export async function exportArtifact(source: string, destination: string, signal?: AbortSignal): Promise<boolean> {
  return (await exportArtifacts([{ source, destination }], signal)).length > 0;
}

/**
 * Places several artifacts as one set: every file is first linked or copied to its hidden
 * temporary, and only once all are there are they renamed into place, in the order given (so the
 * file that describes the others goes last). A failure or Ctrl-C while copying changes none of
 * them. Returns the destinations that changed.
 */
export async function exportArtifacts(pairs: readonly ExportPair[], signal?: AbortSignal): Promise<string[]> {
  const staged: { temp: string; destination: string }[] = [];
  try {
    for (const { source, destination } of pairs) {
      const [from, to] = await Promise.all([stat(source), stat(destination).catch(() => undefined)]);
      if (to && isPlaced(from, to)) continue;
      const dir = path.dirname(destination);
      await mkdir(dir, { recursive: true });
      const prefix = `.${path.basename(destination)}.partial-`;
      await removeDeadPartials(dir, prefix);
      const temp = path.join(dir, `${prefix}${process.pid}`);
      await rm(temp, { force: true });
      staged.push({ temp, destination });
      try {
        await link(source, temp);
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== 'EXDEV') throw error;
        await copyDisk(source, temp, signal);
        // the artifact's mtime marks the copy as its own: a later export sees it is already there
        await utimes(temp, from.atimeMs / 1000, from.mtimeMs / 1000);
      }
    }
    // renames only: the set changes within moments, never a copy's time apart
    for (const { temp, destination } of staged) await rename(temp, destination);
    return staged.map(({ destination }) => destination);
  } catch (error) {
    // a failed or stopped copy leaves nothing behind; a killed run's is removed next time
    for (const { temp } of staged) await rm(temp, { force: true });
    throw error;
  }
}

/**
 * Whether `to` already is the artifact `from`: the same inode, or, on another file system, a copy
 * with its size and mtime (to the millisecond), so an unchanged
 * multi-gigabyte image is not copied again by every build.
 */
function isPlaced(from: Stats, to: Stats): boolean {
  if (to.dev === from.dev) return to.ino === from.ino;
  // within a millisecond: setting a time rounds it through floating-point seconds
  return to.size === from.size && Math.abs(to.mtimeMs - from.mtimeMs) < 1;
}

/** Removes temporaries a killed run left (`kill -9` in the middle of a copy across file systems). */
async function removeDeadPartials(dir: string, prefix: string): Promise<void> {
  for (const name of await readdir(dir).catch(() => [] as string[])) {
    const pid = name.startsWith(prefix) ? Number(name.slice(prefix.length)) : Number.NaN;
    if (Number.isInteger(pid) && pid > 0 && pid !== process.pid && !isAlive(pid)) await rm(path.join(dir, name), { force: true });
  }
}

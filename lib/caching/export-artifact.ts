import { link, mkdir, rename, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { copyDisk } from './disk-copy.ts';

/**
 * Puts a published artifact at a user-facing path (`<out>/nixos.root.img`) without ever
 * showing a partial file there: hard link (or sparse copy across file systems) to a hidden
 * temporary name, then rename. Returns false when the path already is that artifact.
 */
export async function exportArtifact(source: string, destination: string): Promise<boolean> {
  const [from, to] = await Promise.all([stat(source), stat(destination).catch(() => undefined)]);
  if (to && to.ino === from.ino && to.dev === from.dev) return false;
  const dir = path.dirname(destination);
  await mkdir(dir, { recursive: true });
  const temp = path.join(dir, `.${path.basename(destination)}.partial-${process.pid}`);
  await rm(temp, { force: true });
  try {
    await link(source, temp);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EXDEV') throw error;
    await copyDisk(source, temp);
  }
  await rename(temp, destination);
  return true;
}

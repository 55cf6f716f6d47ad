import { link, mkdir, readdir, rename, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { copyDisk } from './disk-copy.ts';
import { isAlive } from './lock.ts';

/**
 * Puts a published artifact at a user-facing path (`<out>/nixos.root.img`) without ever
 * showing a partial file there: hard link (or sparse copy across file systems) to a hidden
 * temporary name, then rename. Returns false when the path already is that artifact. `signal`
 * stops a copy across file systems (Ctrl-C); its temporary is removed.
 */
export async function exportArtifact(source: string, destination: string, signal?: AbortSignal): Promise<boolean> {
  const [from, to] = await Promise.all([stat(source), stat(destination).catch(() => undefined)]);
  if (to && to.ino === from.ino && to.dev === from.dev) return false;
  const dir = path.dirname(destination);
  await mkdir(dir, { recursive: true });
  const prefix = `.${path.basename(destination)}.partial-`;
  await removeDeadPartials(dir, prefix);
  const temp = path.join(dir, `${prefix}${process.pid}`);
  await rm(temp, { force: true });
  try {
    try {
      await link(source, temp);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EXDEV') throw error;
      await copyDisk(source, temp, signal);
    }
    await rename(temp, destination);
  } catch (error) {
    await rm(temp, { force: true }); // a failed or stopped copy leaves nothing behind; a killed run's is removed next time
    throw error;
  }
  return true;
}

/** Removes temporaries a killed run left (`kill -9` in the middle of a copy across file systems). */
async function removeDeadPartials(dir: string, prefix: string): Promise<void> {
  for (const name of await readdir(dir).catch(() => [] as string[])) {
    const pid = name.startsWith(prefix) ? Number(name.slice(prefix.length)) : Number.NaN;
    if (Number.isInteger(pid) && pid > 0 && pid !== process.pid && !isAlive(pid)) await rm(path.join(dir, name), { force: true });
  }
}

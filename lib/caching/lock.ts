import { mkdir, open, readFile, rm } from 'node:fs/promises';
import path from 'node:path';
import { fail, ok, type Result } from '../engine/result.ts';

/** Who holds a cache folder. */
export interface LockOwner {
  readonly pid: number;
  readonly command: string;
  readonly since: string;
  /** The kernel's boot id: after a reboot the same pid may belong to another process. */
  readonly boot?: string;
}

/** This boot's id (Linux), or '' where there is none. */
async function bootId(): Promise<string> {
  return (await readFile('/proc/sys/kernel/random/boot_id', 'utf8').catch(() => '')).trim();
}

/** Why the lock was not taken. */
export type LockError =
  | { readonly reason: 'busy'; readonly owner: LockOwner }
  | { readonly reason: 'aborted' };

/** A held lock; `release` is safe to call twice. */
export interface CacheLock {
  release(): Promise<void>;
}

/** Options for taking the lock. */
export interface LockOptions {
  readonly command: string;
  /** Refuse at once instead of waiting for the other run. */
  readonly noWait?: boolean;
  readonly signal?: AbortSignal;
  /** Told once when we start waiting, and when a dead run's lock is removed. */
  readonly notify?: (message: string) => void;
  readonly pollMs?: number;
}

/** True while a process with this pid exists. */
export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Takes the cache folder's lock: waits for a live holder, removes a dead holder's lock. */
export async function lockCache(cacheDir: string, options: LockOptions): Promise<Result<CacheLock, LockError>> {
  const file = path.join(cacheDir, 'lock');
  await mkdir(cacheDir, { recursive: true });
  let announced = false;
  for (;;) {
    if (options.signal?.aborted) return fail({ reason: 'aborted' });
    try {
      const handle = await open(file, 'wx'); // atomic: exactly one creator wins
      const owner: LockOwner = { pid: process.pid, command: options.command, since: new Date().toISOString(), boot: await bootId() };
      await handle.writeFile(JSON.stringify(owner));
      await handle.close();
      let released = false;
      return ok({
        async release() {
          if (released) return;
          released = true;
          await rm(file, { force: true });
        },
      });
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    }
    const owner = await readOwner(file);
    if (owner && (!isAlive(owner.pid) || (owner.boot && owner.boot !== (await bootId())))) {
      await rm(file, { force: true });
      options.notify?.(`removed the lock of a dead run (pid ${owner.pid}, ${owner.command}, since ${owner.since})`);
      continue;
    }
    if (!owner) {
      // Being written right now, or left empty by a crash between create and write.
      await sleep(options.pollMs ?? 200);
      const again = await readOwner(file);
      if (!again) {
        await rm(file, { force: true });
        options.notify?.('removed an empty lock file left by a crashed run');
      }
      continue;
    }
    if (options.noWait) return fail({ reason: 'busy', owner });
    if (!announced) {
      options.notify?.(`waiting for another run (pid ${owner.pid}, ${owner.command}) to release ${cacheDir}`);
      announced = true;
    }
    await sleep(options.pollMs ?? 500, options.signal);
  }
}

async function readOwner(file: string): Promise<LockOwner | undefined> {
  try {
    const owner = JSON.parse(await readFile(file, 'utf8')) as LockOwner;
    return typeof owner.pid === 'number' ? owner : undefined;
  } catch {
    return undefined;
  }
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal?.addEventListener('abort', () => {
      clearTimeout(timer);
      resolve();
    }, { once: true });
  });
}

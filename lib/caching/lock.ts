import { randomBytes } from 'node:crypto';
import { link, mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
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
    const owner: LockOwner = { pid: process.pid, command: options.command, since: new Date().toISOString(), boot: await bootId() };
    const text = JSON.stringify(owner);
    // written in full beside it, then linked into place: link is atomic, exactly one creator wins,
    // and the lock file is never seen empty
    const draft = `${file}.new-${process.pid}-${randomBytes(4).toString('hex')}`;
    await writeFile(draft, text);
    const won = await link(draft, file).then(
      () => true,
      (error: NodeJS.ErrnoException) => {
        if (error.code === 'EEXIST') return false;
        throw error;
      },
    ).finally(() => rm(draft, { force: true }));
    if (won) {
      let released = false;
      return ok({
        async release() {
          if (released) return;
          released = true;
          // only our own: a lock file that names another run is that run's
          await removeIfStill(file, text);
        },
      });
    }
    const held = await readOwner(file);
    if (held.missing) continue; // released just now
    const holder = held.owner;
    if (holder && (!isAlive(holder.pid) || (holder.boot && holder.boot !== (await bootId())))) {
      if (await removeIfStill(file, held.text)) options.notify?.(`removed the lock of a dead run (pid ${holder.pid}, ${holder.command}, since ${holder.since})`);
      continue;
    }
    if (!holder) {
      // Left empty or garbled by a crash (older versions wrote it after creating it), or just released.
      await sleep(options.pollMs ?? 200);
      const again = await readOwner(file);
      if (!again.owner && (await removeIfStill(file, again.text))) options.notify?.('removed an empty lock file left by a crashed run');
      continue;
    }
    if (options.noWait) return fail({ reason: 'busy', owner: holder });
    if (!announced) {
      options.notify?.(`waiting for another run (pid ${holder.pid}, ${holder.command}) to release ${cacheDir}`);
      announced = true;
    }
    await sleep(options.pollMs ?? 500, options.signal);
  }
}

/** The lock file's text and, when it names one, its owner; `missing` when there is no lock file. */
async function readOwner(file: string): Promise<{ owner: LockOwner | undefined; text: string; missing: boolean }> {
  const text = await readFile(file, 'utf8').catch((error: NodeJS.ErrnoException) => (error.code === 'ENOENT' ? undefined : ''));
  if (text === undefined) return { owner: undefined, text: '', missing: true };
  try {
    const owner = JSON.parse(text) as LockOwner;
    return { owner: typeof owner.pid === 'number' ? owner : undefined, text, missing: false };
  } catch {
    return { owner: undefined, text, missing: false };
  }
}

/**
 * Removes the lock file only while it still holds `expected` (what was read before deciding it was
 * stale). It is moved aside first: when another run took the lock meanwhile, what was moved is its
 * fresh lock, which is linked back instead of deleted. Returns whether the stale lock was removed.
 */
export async function removeIfStill(file: string, expected: string): Promise<boolean> {
  const aside = `${file}.stale-${process.pid}-${randomBytes(4).toString('hex')}`;
  try {
    await rename(file, aside);
  } catch {
    return false; // gone already: another run removed it
  }
  const moved = await readFile(aside, 'utf8').catch(() => expected);
  if (moved !== expected) await link(aside, file).catch(() => undefined);
  await rm(aside, { force: true });
  return moved === expected;
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const done = (): void => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal?.addEventListener('abort', done, { once: true });
  });
}

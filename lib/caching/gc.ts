import cacache from 'cacache';
import { lstat, readdir, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import type { CacheStore } from './cache-store.ts';
import { allocatedBytes } from './free-space.ts';

/** What gc did. */
export interface GcReport {
  readonly before: number;
  readonly after: number;
  readonly evicted: readonly { fingerprint: string; taskId: string; bytes: number }[];
  readonly orphans: number;
}

interface Candidate {
  readonly fingerprint: string;
  readonly bytes: number;
  /** Its folder's mtime: set at publish and on every cache hit. */
  readonly usedMs: number;
}

/**
 * Frees cache space. With `maxBytes`, evicts least recently used entries until the allocated
 * bytes fit, and deletes old logs only if that was not enough. Without it, keeps the most
 * recently used entry of each task and evicts the rest (entries older configs made), along with
 * every log but each task's newest. Either way orphan artifact folders go.
 */
export async function collectGarbage(store: CacheStore, maxBytes?: number): Promise<GcReport> {
  // what the report compares: the same three folders, measured the same way before and after
  const measure = async (): Promise<number> =>
    (await allocatedBytes(store.indexDir)) + (await allocatedBytes(store.artifactsDir)) + (await allocatedBytes(store.logsDir));
  const measuredBefore = await measure();
  const indexed = new Set<string>();
  // an index that cannot be read is an error, not an empty index: every artifact would look orphaned
  for (const key of Object.keys(await cacache.ls(store.indexDir))) {
    if (key.startsWith('entry/')) indexed.add(key.slice('entry/'.length));
  }
  const entries: Candidate[] = [];
  let orphans = 0;
  for (const name of await readdir(store.artifactsDir).catch(() => [] as string[])) {
    const folder = path.join(store.artifactsDir, name);
    if (!indexed.has(name)) {
      await store.evict(name); // published folder without an index record: a crash between rename and put
      orphans += 1;
      continue;
    }
    entries.push({ fingerprint: name, bytes: await allocatedBytes(folder), usedMs: (await stat(folder)).mtimeMs });
  }
  for (const fingerprint of indexed) {
    if (!entries.some((e) => e.fingerprint === fingerprint)) entries.push({ fingerprint, bytes: 0, usedMs: 0 });
  }
  const fixed = (await allocatedBytes(store.indexDir)) + (await allocatedBytes(store.logsDir));
  const before = fixed + entries.reduce((sum, e) => sum + e.bytes, 0);
  const owners = await taskIds(store, entries);
  const victims = maxBytes === undefined ? superseded(entries, owners) : leastRecentlyUsed(entries, before, maxBytes);
  const evicted: GcReport['evicted'][number][] = [];
  for (const entry of victims) {
    // read before evicting: evict removes the index record that names the task
    const recorded = owners.has(entry.fingerprint) ? undefined : await store.recordedTaskId(entry.fingerprint);
    await store.evict(entry.fingerprint);
    evicted.push({ fingerprint: entry.fingerprint, taskId: owners.get(entry.fingerprint) ?? `${recorded ?? '(unknown task)'} (damaged)`, bytes: entry.bytes });
  }
  await repointLastEntries(store, entries, owners, new Set(evicted.map((e) => e.fingerprint)));
  const left = before - evicted.reduce((sum, e) => sum + e.bytes, 0);
  if (maxBytes === undefined || left > maxBytes) await dropOldLogs(store.logsDir);
  // drops content no index entry points to (superseded pointers and records, interrupted writes);
  // on a cache without an index it would only create one, and its stamp file is not the cache's
  if (await exists(store.indexDir)) {
    await cacache.verify(store.indexDir);
    await rm(path.join(store.indexDir, '_lastverified'), { force: true });
  }
  return { before: measuredBefore, after: await measure(), evicted, orphans };
}

/** Task id of each entry that is still usable (index record readable, artifacts pass the stat check). */
async function taskIds(store: CacheStore, entries: readonly Candidate[]): Promise<Map<string, string>> {
  const owners = new Map<string, string>();
  for (const entry of entries) {
    const found = await store.lookup(entry.fingerprint);
    if (found.ok) owners.set(entry.fingerprint, found.value.taskId);
  }
  return owners;
}

/**
 * A task whose last entry was evicted points at its most recently used remaining one, so that
 * `explain` and `plan` still compare against a real run instead of saying "evicted or lost".
 */
async function repointLastEntries(
  store: CacheStore,
  entries: readonly Candidate[],
  owners: ReadonlyMap<string, string>,
  evicted: ReadonlySet<string>,
): Promise<void> {
  const tasks = new Set([...evicted].flatMap((fingerprint) => owners.get(fingerprint) ?? []));
  for (const taskId of tasks) {
    if ((await store.lastEntry(taskId)) !== undefined) continue;
    const remaining = entries.filter((e) => !evicted.has(e.fingerprint) && owners.get(e.fingerprint) === taskId);
    const newest = remaining.sort((a, b) => b.usedMs - a.usedMs)[0];
    if (newest) await store.setLastEntry(taskId, newest.fingerprint);
  }
}

/** Oldest first, until what is left fits `maxBytes`. */
function leastRecentlyUsed(entries: readonly Candidate[], total: number, maxBytes: number): Candidate[] {
  const victims: Candidate[] = [];
  for (const entry of [...entries].sort((a, b) => a.usedMs - b.usedMs)) {
    if (total <= maxBytes) break;
    victims.push(entry);
    total -= entry.bytes;
  }
  return victims;
}

/** Every entry but each task's most recently used one; damaged entries (no task id) too, since no build can use them. */
function superseded(entries: readonly Candidate[], owners: ReadonlyMap<string, string>): Candidate[] {
  const newest = new Map<string, Candidate>();
  for (const entry of entries) {
    const taskId = owners.get(entry.fingerprint);
    if (taskId === undefined) continue;
    const kept = newest.get(taskId);
    if (!kept || entry.usedMs > kept.usedMs) newest.set(taskId, entry);
  }
  const keep = new Set([...newest.values()].map((e) => e.fingerprint));
  return entries.filter((e) => !keep.has(e.fingerprint));
}

/** Deletes every log but the newest of each task. */
async function dropOldLogs(logsDir: string): Promise<void> {
  for (const folder of await readdir(logsDir).catch(() => [] as string[])) {
    const logs = (await readdir(path.join(logsDir, folder)).catch(() => [] as string[])).sort();
    for (const old of logs.slice(0, -1)) await rm(path.join(logsDir, folder, old), { force: true });
  }
}

async function exists(file: string): Promise<boolean> {
  return lstat(file).then(() => true, () => false);
}

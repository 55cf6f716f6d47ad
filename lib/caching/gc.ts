import cacache from 'cacache';
import { readdir, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { allocatedBytes, type CacheStore } from './cache-store.ts';

/** What gc did. */
export interface GcReport {
  readonly before: number;
  readonly after: number;
  readonly evicted: readonly { fingerprint: string; taskId: string; bytes: number }[];
  readonly orphans: number;
}

/** Evicts least recently used entries (by their folder's mtime, set on every cache hit) until allocated bytes fit. */
export async function collectGarbage(store: CacheStore, maxBytes: number): Promise<GcReport> {
  const indexed = new Map<string, string>();
  for (const [key] of Object.entries(await cacache.ls(store.indexDir).catch(() => ({})))) {
    if (key.startsWith('entry/')) indexed.set(key.slice('entry/'.length), key);
  }
  const entries: { fingerprint: string; taskId: string; bytes: number; usedMs: number }[] = [];
  let orphans = 0;
  for (const name of await readdir(store.artifactsDir).catch(() => [] as string[])) {
    const folder = path.join(store.artifactsDir, name);
    if (!indexed.has(name)) {
      await store.evict(name); // published folder without an index record: a crash between rename and put
      orphans += 1;
      continue;
    }
    const info = await stat(folder);
    entries.push({ fingerprint: name, taskId: '', bytes: await allocatedBytes(folder), usedMs: info.mtimeMs });
  }
  for (const fingerprint of indexed.keys()) {
    if (!entries.some((e) => e.fingerprint === fingerprint)) entries.push({ fingerprint, taskId: '', bytes: 0, usedMs: 0 });
  }
  const fixed = (await allocatedBytes(store.indexDir)) + (await allocatedBytes(store.logsDir));
  const before = fixed + entries.reduce((sum, e) => sum + e.bytes, 0);
  let total = before;
  const evicted: GcReport['evicted'][number][] = [];
  for (const entry of entries.sort((a, b) => a.usedMs - b.usedMs)) {
    if (total <= maxBytes) break;
    const found = await store.lookup(entry.fingerprint);
    const taskId = found.ok ? found.value.taskId : '(damaged)';
    await store.evict(entry.fingerprint);
    total -= entry.bytes;
    evicted.push({ fingerprint: entry.fingerprint, taskId, bytes: entry.bytes });
  }
  if (total > maxBytes) {
    // Still too big: old logs go too, keeping each task's newest one.
    for (const folder of await readdir(store.logsDir).catch(() => [] as string[])) {
      const logs = (await readdir(path.join(store.logsDir, folder)).catch(() => [] as string[])).sort();
      for (const old of logs.slice(0, -1)) await rm(path.join(store.logsDir, folder, old), { force: true });
    }
  }
  await cacache.verify(store.indexDir); // drops content no index entry points to
  const after = (await allocatedBytes(store.indexDir)) + (await allocatedBytes(store.artifactsDir)) + (await allocatedBytes(store.logsDir));
  return { before, after, evicted, orphans };
}

import cacache from 'cacache';
import { readdir, rm } from 'node:fs/promises';
import path from 'node:path';
import type { CacheStore } from '../../caching/cache-store.ts';
import { mountsUnder } from '../../execution/mount-table.ts';
import { hashPath } from '../../caching/file-hash.ts';
import { collectGarbage } from '../../caching/gc.ts';
import { formatBytes } from '../../logging/format.ts';
import type { CliArgs } from '../args.ts';
import type { CliIo } from '../common.ts';

/** `clean`, `gc` and `verify`: they work on the cache alone, without the config. */
export async function maintain(store: CacheStore, args: CliArgs, io: CliIo, signal: AbortSignal): Promise<number> {
  switch (args.command) {
    case 'clean': {
      const names = await readdir(store.dir).catch(() => [] as string[]);
      const kept: string[] = [];
      for (const name of names) {
        if (name === '.gitignore' || name === 'lock') continue;
        const target = path.join(store.dir, name);
        // A live `shell` keeps its mounted copy in work/: never delete through a mount.
        const mounts = await mountsUnder(target);
        if (mounts.length === 0) {
          await rm(target, { recursive: true, force: true });
          continue;
        }
        for (const child of await readdir(target).catch(() => [] as string[])) {
          const inner = path.join(target, child);
          if ((await mountsUnder(inner)).length === 0) await rm(inner, { recursive: true, force: true });
          else kept.push(inner);
        }
      }
      io.stdout(`cleaned ${store.dir}${kept.length ? `; kept ${kept.join(', ')} (still mounted: a shell is open on it)` : ''}\n`);
      return 0;
    }
    case 'gc': {
      const report = await collectGarbage(store, args.maxSize);
      io.stdout(`gc: ${formatBytes(report.before)} -> ${formatBytes(report.after)}; evicted ${report.evicted.length} entr${report.evicted.length === 1 ? 'y' : 'ies'}${report.orphans ? `, ${report.orphans} orphan folder(s)` : ''}\n`);
      for (const e of report.evicted) io.stdout(`  evicted ${e.taskId} ${e.fingerprint.slice(0, 12)} (${formatBytes(e.bytes)})\n`);
      return 0;
    }
    default:
      return verify(store, io, signal);
  }
}

/**
 * Rehashes everything: cacache checks its own content (index, manifests, values); file and folder
 * artifacts are compared with the hash taken at publish; disks with the hash the first verify
 * recorded (a baseline, since hashing every disk at publish would slow every build). Ctrl-C stops
 * the artifact checks between reads (cacache's own index check runs to its end): what was checked
 * so far is reported, and the exit status is 1.
 */
async function verify(store: CacheStore, io: CliIo, signal: AbortSignal): Promise<number> {
  const keys = async (): Promise<string[]> => Object.keys(await cacache.ls(store.indexDir).catch(() => ({})));
  const listedBefore = await keys();
  const before = listedBefore.filter((k) => k.startsWith('entry/'));
  // Task ids by fingerprint, read before cacache drops the entries whose content is bad.
  const owners = new Map<string, string>();
  for (const key of listedBefore) {
    if (!key.startsWith('last/')) continue;
    const last = await cacache.get(store.indexDir, key).then((d) => JSON.parse(d.data.toString('utf8')) as { fingerprint: string }, () => undefined);
    if (last) owners.set(last.fingerprint, key.slice('last/'.length));
  }
  const stats = await cacache.verify(store.indexDir).catch((error: Error) => ({ error }));
  if ('error' in stats) io.stdout(`index: could not verify (${stats.error.message})\n`);
  else io.stdout(`index: ${stats.verifiedContent} content item(s) rehashed, ${stats.badContentCount} bad removed\n`);
  let damaged = 0;
  const after = new Set((await keys()).filter((k) => k.startsWith('entry/')));
  for (const key of before) {
    if (after.has(key)) continue;
    // cacache removed an entry whose content failed its hash: that is damage, and the next build redoes it.
    const fingerprint = key.slice('entry/'.length);
    damaged += 1;
    io.stdout(`damaged: ${owners.get(fingerprint) ? `${owners.get(fingerprint)} ` : ''}${fingerprint.slice(0, 12)}: index entry corrupt; removed (the next build redoes it)\n`);
    await store.evict(fingerprint);
  }
  let good = 0;
  let checked = 0;
  for (const key of after) {
    if (signal.aborted) break;
    const fingerprint = key.slice('entry/'.length);
    const found = await store.lookup(fingerprint);
    if (!found.ok) {
      damaged += 1;
      const owner = owners.get(fingerprint) ?? (await store.recordedTaskId(fingerprint));
      io.stdout(`damaged: ${owner ? `${owner} ` : ''}${fingerprint.slice(0, 12)}: ${found.error.reason === 'damaged' ? found.error.detail : 'index record lost'} (a miss: the next build redoes it)\n`);
      checked += 1;
      continue;
    }
    const entry = found.value;
    const baselineKey = `verify/${fingerprint}`;
    const baseline = await cacache.get(store.indexDir, baselineKey).then((d) => JSON.parse(d.data.toString('utf8')) as Record<string, string>, () => ({}) as Record<string, string>);
    let recorded = false;
    const problems: string[] = [];
    let cut = false;
    for (const [name, artifact] of Object.entries(entry.artifacts)) {
      const hash = await hashPath(store.artifactPath(fingerprint, name), { signal }).catch((error: Error) => {
        if (signal.aborted) return undefined;
        throw error;
      });
      if (hash === undefined) {
        cut = true;
        break;
      }
      const expected = artifact.sha256 ?? baseline[name];
      if (expected === undefined) {
        baseline[name] = hash;
        recorded = true;
      } else if (expected !== hash) problems.push(`${name} content changed since ${artifact.sha256 ? 'publish' : 'the first verify'}`);
    }
    if (recorded) await cacache.put(store.indexDir, baselineKey, JSON.stringify(baseline));
    // an entry whose hashing was cut short counts only when it already showed damage
    if (cut && problems.length === 0) break;
    checked += 1;
    if (problems.length > 0) {
      damaged += 1;
      await store.evict(fingerprint);
      io.stdout(`damaged: ${entry.taskId} ${fingerprint.slice(0, 12)}: ${problems.join('; ')}; evicted (the next build redoes it)\n`);
    } else good += 1;
  }
  const counts = `${good} entr${good === 1 ? 'y' : 'ies'} intact, ${damaged} damaged`;
  // a signal after the last entry was checked cut nothing short
  if (checked < after.size) {
    io.stdout(`interrupted: ${counts}; ${after.size - checked} of ${after.size} not checked (run verify again)\n`);
    return 1;
  }
  io.stdout(`${counts}\n`);
  return damaged === 0 ? 0 : 1;
}

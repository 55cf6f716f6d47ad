import type { CacheEntry, CacheStore } from '../caching/cache-store.ts';
import { canonicalJson } from '../caching/canonical-json.ts';
import { sha256 } from '../caching/file-hash.ts';
import { buildManifest, diffManifests, fingerprintOf, type Manifest } from '../caching/fingerprint.ts';
import type { GraphNode, Json, Task } from '../engine/task.ts';
import type { ScheduleState } from './schedule-state.ts';

/** Stands for a dependency's fingerprint in plan mode while that dependency would still run. */
const PENDING_KEY = '(rebuilt first)';

/** Whether a task is taken from the cache, and why or why not. */
export interface Decision {
  readonly manifest: Manifest;
  readonly fingerprint: string;
  /** The fresh entry to use; absent when the task must run. */
  readonly entry?: CacheEntry;
  readonly why: string;
}

/**
 * The node's manifest. A dependency's key comes from `keys` (fingerprints chained inside a
 * transaction), else from its outcome; in plan mode a dependency that would run stands as pending.
 */
export async function manifestOf(state: ScheduleState, node: GraphNode, keys: ReadonlyMap<string, string> = new Map()): Promise<Manifest> {
  const depKeys: Record<string, string> = {};
  for (const dep of node.deps) depKeys[dep] = contentKey(state, node, dep) ?? keys.get(dep) ?? state.outcomes.get(dep)?.key ?? PENDING_KEY;
  return buildManifest(node, depKeys, state.options.memo);
}

/** The key of a dependency the node is keyed on by content: the hashes of the artifacts it names. */
function contentKey(state: ScheduleState, node: GraphNode, dep: string): string | undefined {
  const names = 'keyedOnContent' in node ? node.keyedOnContent?.[dep] : undefined;
  const hashes = state.outcomes.get(dep)?.hashes;
  if (!names || !hashes || names.some((name) => hashes[name] === undefined)) return undefined;
  return sha256(canonicalJson({ content: Object.fromEntries(names.map((name) => [name, hashes[name]!])) }));
}

/** Looks a task up; returns the entry when fresh, else why it must run. */
export async function decide(state: ScheduleState, node: Task<any>, keys: ReadonlyMap<string, string> = new Map()): Promise<Decision> {
  const { options } = state;
  const manifest = await manifestOf(state, node, keys);
  const fingerprint = fingerprintOf(manifest);
  options.onManifest?.(node.id, manifest);
  if (node.volatile) return { manifest, fingerprint, why: 'runs every time (volatile)' };
  if (options.force?.has(node.id)) return { manifest, fingerprint, why: 'forced' };
  const found = await options.store.lookup(fingerprint);
  if (found.ok) {
    const gone = await node.checkCached?.(found.value.values, options.memo);
    if (gone) return { manifest, fingerprint, why: `cache entry stale: ${gone}` };
    return { manifest, fingerprint, entry: found.value, why: 'fresh in cache' };
  }
  if (found.error.reason === 'damaged') {
    options.reporter.event({ type: 'notice', level: 'warn', message: `${node.id}: cache entry damaged (${found.error.detail}); rebuilding it` });
  }
  const detail = found.error.reason === 'damaged' ? found.error.detail : undefined;
  return { manifest, fingerprint, why: await missReason(options.store, node, manifest, detail) };
}

/**
 * Records that this build used an entry: its last-used time now, and (in the background; the
 * pointers are written by the end of the run) what plan and explain compare with next time.
 */
export async function markUsed(state: ScheduleState, id: string, fingerprint: string): Promise<void> {
  const { store, reporter } = state.options;
  await store.touch(fingerprint);
  // not fatal (the build used the entry either way), but plan and explain would compare with another one
  state.pointerUpdates.push(
    store.markUsed(id, fingerprint).catch((error: unknown) => {
      reporter.event({ type: 'notice', level: 'warn', message: `${id}: could not record the entry this build used (${(error as Error).message}); plan and explain may compare with an older one` });
    }),
  );
}

/** Explains a miss by comparing with the task's entry the last build used (or published). */
async function missReason(store: CacheStore, node: GraphNode, manifest: Manifest, detail?: string): Promise<string> {
  if (detail) return `cache entry damaged (${detail})`;
  const last = await store.lastEntry(node.id);
  if (!last) return (await store.hasBuilt(node.id)) ? 'cache entry evicted or lost' : 'never built';
  const changes = diffManifests(last.manifest, manifest).map((c) => c.field);
  if (changes.length === 0) return 'cache entry missing';
  const shown = changes.slice(0, 3).join(', ');
  return `changed: ${shown}${changes.length > 3 ? ` and ${changes.length - 3} more` : ''}`;
}

/** The key dependents see: the fingerprint, or the hash of the values a task is keyed by. */
export function keyAfterRun(node: Task<any>, fingerprint: string, values: Readonly<Record<string, Json>>): string {
  if (Array.isArray(node.keyedByValues)) {
    return sha256(canonicalJson(Object.fromEntries(node.keyedByValues.filter((name) => name in values).map((name) => [name, values[name]!])) as Json));
  }
  return node.volatile || node.keyedByValues ? sha256(canonicalJson(values as Json)) : fingerprint;
}

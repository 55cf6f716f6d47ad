import { diffManifests } from '../../caching/fingerprint.ts';
import type { CacheStore } from '../../caching/cache-store.ts';
import { ConfigError } from '../../engine/config-error.ts';
import { describeGraphError } from '../../engine/failure.ts';
import { resolveTargets, type Graph } from '../../engine/graph.ts';
import { isResource } from '../../engine/task.ts';
import type { CliArgs } from '../args.ts';
import { dryRun, selection, type CliIo } from '../common.ts';
import type { GraphState } from '../graph-format.ts';

/** Each node's state as `plan` sees it, for colouring the graph. */
export async function planStates(graph: Graph, store: CacheStore, ids: readonly string[], signal: AbortSignal): Promise<Map<string, GraphState>> {
  const { summary } = await dryRun(graph, store, ids, signal);
  return new Map(summary.tasks.map((t) => [t.id, t.status === 'ran' ? 'stale' : t.status]));
}

/** `plan`: one line per task, what build would do and why; reads only. */
export async function plan(graph: Graph, store: CacheStore, args: CliArgs, io: CliIo, signal: AbortSignal): Promise<number> {
  const { summary } = await dryRun(graph, store, selection(graph, args.targets, { resourcesAsUsers: true }), signal);
  if (args.json) {
    for (const t of summary.tasks) io.stdout(`${JSON.stringify({ type: 'plan', id: t.id, stage: t.stage, action: t.status === 'ran' ? 'run' : t.status === 'cached' ? 'fresh' : t.status, reason: t.reason, fingerprint: t.fingerprint })}\n`);
    return 0;
  }
  const width = Math.max(...summary.tasks.map((t) => t.id.length));
  for (const t of summary.tasks) {
    const action = t.status === 'ran' ? 'run' : t.status === 'cached' ? 'fresh' : t.status;
    io.stdout(`${t.id.padEnd(width)}  ${action.padEnd(7)}  ${t.reason}\n`);
  }
  const toRun = summary.tasks.filter((t) => t.status === 'ran').length;
  io.stdout(`${toRun} of ${summary.tasks.length} task(s) would run\n`);
  return 0;
}

/** `explain`: the manifest fields that differ from the task's entry the last build used. */
export async function explain(graph: Graph, store: CacheStore, args: CliArgs, io: CliIo, signal: AbortSignal): Promise<number> {
  const ids = resolveTargets(graph, args.targets);
  if (!ids.ok) throw new ConfigError([describeGraphError(ids.error)]);
  // a resource's verdict depends on the tasks that hold it: they are planned with it (and it with them), as plan does
  const { summary, manifests } = await dryRun(graph, store, selection(graph, args.targets, { resourcesAsUsers: true }), signal);
  for (const id of ids.value) {
    const row = summary.tasks.find((t) => t.id === id)!;
    // a resource such as mount publishes nothing, so has no run to compare with: what plan says of it
    if (isResource(graph.nodes.get(id)!)) {
      io.stdout(`${id}: ${row.reason}\n`);
      continue;
    }
    const manifest = manifests.get(id);
    const last = await store.lastEntry(id);
    if (!manifest) {
      // its inputs are not known until a dependency has run; still say whether it was ever built
      io.stdout(`${id}: ${row.reason}${(await store.hasBuilt(id)) ? '' : `; never built in ${store.dir}`}\n`);
      continue;
    }
    if (!last) {
      // plan's wording: gc, verify or a lost index entry is not "never built"
      const why = (await store.hasBuilt(id)) ? 'cache entry evicted or lost' : 'never built';
      // a dependency that runs first is worth saying too, as plan does
      const first = row.reason.startsWith('dependency ') ? `${row.reason}; ` : '';
      io.stdout(`${id}: ${first}${why} in ${store.dir}${why === 'never built' ? '' : '; nothing to compare with'}\n`);
      continue;
    }
    const changes = diffManifests(last.manifest, manifest);
    if (changes.length === 0) {
      io.stdout(`${id}: ${row.status === 'cached' ? 'fresh' : row.reason}; nothing differs from the entry the last build used (published ${last.publishedAt})\n`);
      continue;
    }
    io.stdout(`${id}: ${changes.length} field(s) differ from the entry the last build used (published ${last.publishedAt}):\n`);
    for (const c of changes) io.stdout(`  ${c.field}: ${c.before ?? '(absent)'} -> ${c.after ?? '(absent)'}\n`);
  }
  return 0;
}

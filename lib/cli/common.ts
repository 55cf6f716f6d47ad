import type { CacheStore } from '../caching/cache-store.ts';
import type { Manifest } from '../caching/fingerprint.ts';
import { lockCache } from '../caching/lock.ts';
import { sweepLeftovers, type Sweeper } from '../caching/sweep.ts';
import { ConfigError } from '../engine/config-error.ts';
import { describeGraphError } from '../engine/failure.ts';
import { closure, resolveTargets, runnableTargets, type Graph } from '../engine/graph.ts';
import { schedule } from '../execution/scheduler.ts';
import { completeTransactions } from '../execution/units.ts';
import type { Reporter } from '../logging/events.ts';
import type { CliArgs } from './args.ts';

/** Where the runner writes; tests pass their own. */
export interface CliIo {
  readonly stdout: (text: string) => void;
  readonly stderr: (text: string) => void;
  /** Whether stdout is a terminal the live display can draw in (one with a width). */
  readonly isTty: boolean;
  readonly env: Readonly<Record<string, string | undefined>>;
}

/** The targets, their dependencies and whole transactions; an unknown name is a config error. */
export function selection(graph: Graph, targets: readonly string[], options: { resourcesAsUsers?: boolean } = {}): string[] {
  const ids = resolveTargets(graph, targets);
  if (!ids.ok) throw new ConfigError([describeGraphError(ids.error)]);
  // build, run, plan and explain plan a named resource with the tasks that hold it; shell means the resource alone
  const named = options.resourcesAsUsers ? runnableTargets(graph, ids.value) : ids.value;
  return completeTransactions(graph, closure(graph, named));
}

/** Commands that write the cache hold its lock and first sweep dead runs' leftovers. */
export async function withLock(
  store: CacheStore,
  args: CliArgs,
  io: CliIo,
  signal: AbortSignal,
  sweepers: readonly Sweeper[],
  body: () => Promise<number>,
): Promise<number> {
  const say = (message: string): void => (args.json ? io.stdout(`${JSON.stringify({ type: 'notice', level: 'info', message })}\n`) : io.stderr(`${message}\n`));
  const lock = await lockCache(store.dir, { command: args.command, noWait: args.noWait, signal, notify: say });
  if (!lock.ok) {
    if (lock.error.reason === 'aborted') return 1;
    io.stderr(`error: ${store.dir} is in use by pid ${lock.error.owner.pid} (${lock.error.owner.command} since ${lock.error.owner.since}); rerun without --no-wait to wait for it\n`);
    return 1;
  }
  try {
    for (const line of await sweepLeftovers([store.stagingDir, store.workDir], sweepers)) say(`cleanup: ${line}`);
    return await body();
  } finally {
    await lock.value.release();
  }
}

/** Runs the scheduler in plan mode, collecting each node's state and manifest. */
export async function dryRun(graph: Graph, store: CacheStore, ids: readonly string[], signal: AbortSignal) {
  const manifests = new Map<string, Manifest>();
  const silent: Reporter = { begin() {}, event() {}, end() {} };
  const summary = await schedule({
    graph,
    ids,
    store,
    reporter: silent,
    concurrency: 1,
    signal,
    // read, never saved: plan writes nothing, but need not reread files whose size, mtime and inode held
    memo: await store.loadHashMemo(),
    dryRun: true,
    onManifest: (id, manifest) => manifests.set(id, manifest),
  });
  return { summary, manifests };
}

import { entryOutputs, type CacheEntry, type CacheStore } from '../caching/cache-store.ts';
import { buildManifest, diffManifests, fingerprintOf, type Manifest } from '../caching/fingerprint.ts';
import type { HashMemo } from '../caching/file-hash.ts';
import { sha256 } from '../caching/file-hash.ts';
import { canonicalJson } from '../caching/canonical-json.ts';
import { exportArtifacts } from '../caching/export-artifact.ts';
import type { Graph } from '../engine/graph.ts';
import { isResource, type DependencyOutputs, type GraphNode, type Json, type RunNote, type Task } from '../engine/task.ts';
import type { Reporter, RunSummary, SummaryRow, TaskStatus } from '../logging/events.ts';
import { holdResource, runTask, type NodeRun, type TaskRun } from './run-node.ts';
import { describeTaskFailure, type TaskFailure } from '../engine/failure.ts';
import { createSlotPool } from './slot-pool.ts';
import { groupUnits, unitPriorities, type Unit } from './units.ts';

/** Stands for a dependency's fingerprint in plan mode while that dependency would still run. */
const PENDING_KEY = '(rebuilt first)';

/** How to run a selection of the graph. */
export interface ScheduleOptions {
  readonly graph: Graph;
  /** Ids to consider, dependencies first (see `closure`). */
  readonly ids: readonly string[];
  readonly store: CacheStore;
  readonly reporter: Reporter;
  readonly concurrency: number;
  /** Ids to run even when their cache entry is fresh. */
  readonly force?: ReadonlySet<string>;
  readonly signal: AbortSignal;
  /** Plan only: decide what would run, run nothing, write nothing. */
  readonly dryRun?: boolean;
  readonly memo?: HashMemo;
  /** Told every manifest computed (explain diffs them). */
  readonly onManifest?: (id: string, manifest: Manifest) => void;
}

/** What happened to one node; `key` is what dependents fingerprint. */
interface Outcome {
  readonly status: TaskStatus;
  readonly reason: string;
  readonly key?: string;
  readonly outputs?: DependencyOutputs;
  /** sha256 of each file and folder artifact, as recorded at publish (for `keyedOnContent`). */
  readonly hashes?: Readonly<Record<string, string>>;
  /** Plan mode: the node would run, so dependents cannot know their fingerprint yet. */
  readonly pending?: boolean;
}

/**
 * Runs the selected nodes: independent units at the same time (up to `concurrency`),
 * each node either taken from the cache or run; failures skip dependents only.
 */
export async function schedule(options: ScheduleOptions): Promise<RunSummary> {
  const { graph, store, reporter, signal } = options;
  const started = Date.now();
  const units = groupUnits(graph, options.ids);
  const outcomes = new Map<string, Outcome>();
  const rows = new Map<string, SummaryRow>();
  const unitDone = new Map<Unit, Promise<void>>();
  const priorities = unitPriorities(units);
  const slots = createSlotPool(options.concurrency);
  const acquireSlot = (unit: Unit): Promise<void> => slots.acquire(priorities.get(unit) ?? 0);
  const releaseSlot = (): void => slots.release();

  /** Places a finished task's exported artifacts at their user-facing paths; a failure here fails the task. */
  const exportOutputs = async (node: GraphNode, outcome: Outcome): Promise<Outcome> => {
    if (options.dryRun || isResource(node) || !node.exports || (outcome.status !== 'ran' && outcome.status !== 'cached')) return outcome;
    try {
      const pairs = node.exports.map(({ artifact, to, from }) => {
        const source = (from === undefined ? outcome : outcomes.get(from))?.outputs?.paths[artifact];
        if (!source) throw new Error(`no artifact "${artifact}"${from === undefined ? '' : ` of ${from}`} to export`);
        return { source, destination: to };
      });
      for (const to of await exportArtifacts(pairs, signal)) reporter.event({ type: 'output', id: node.id, line: `wrote ${to}` });
      return outcome;
    } catch (error) {
      // a copy to --out that Ctrl-C stopped is an interruption like any other, not a failure
      if (signal.aborted) return { status: 'failed', reason: describeTaskFailure({ reason: 'aborted' }) };
      return { status: 'failed', reason: `exporting outputs failed: ${(error as Error).message}` };
    }
  };

  const finish = async (node: GraphNode, planned: Outcome, extra: Partial<SummaryRow> = {}): Promise<void> => {
    const outcome = await exportOutputs(node, planned);
    outcomes.set(node.id, outcome);
    const row: SummaryRow = {
      id: node.id,
      stage: node.stage,
      title: node.title,
      status: outcome.status,
      reason: outcome.reason,
      durationMs: extra.durationMs ?? 0,
      bytes: extra.bytes ?? 0,
      fingerprint: extra.fingerprint,
      failure: extra.failure,
    };
    rows.set(node.id, row);
    reporter.event({
      type: 'task',
      id: node.id,
      stage: node.stage,
      status: row.status,
      reason: row.reason,
      durationMs: row.durationMs,
      fingerprint: row.fingerprint,
      bytes: extra.bytes,
      failure: extra.failure,
    });
  };

  /** Why a node cannot run because of its dependencies (those outside `inside`), if it cannot. */
  const blockedBy = (node: GraphNode, inside: readonly string[] = []): string | undefined => {
    for (const dep of node.deps) {
      if (inside.includes(dep)) continue;
      const outcome = outcomes.get(dep);
      if (outcome?.status === 'failed') return `dependency ${dep} failed`;
      if (outcome?.status === 'skipped' && !isResource(graph.nodes.get(dep)!)) return `dependency ${dep} was skipped`;
    }
    if (signal.aborted) return 'build interrupted';
    return undefined;
  };

  const manifestOf = async (node: GraphNode, keys: Map<string, string>): Promise<Manifest> => {
    const depKeys: Record<string, string> = {};
    for (const dep of node.deps) depKeys[dep] = contentKey(node, dep) ?? keys.get(dep) ?? outcomes.get(dep)?.key ?? PENDING_KEY;
    return buildManifest(node, depKeys, options.memo);
  };

  /** The key of a dependency the node is keyed on by content: the hashes of the artifacts it names. */
  const contentKey = (node: GraphNode, dep: string): string | undefined => {
    const names = 'keyedOnContent' in node ? node.keyedOnContent?.[dep] : undefined;
    const hashes = outcomes.get(dep)?.hashes;
    if (!names || !hashes || names.some((name) => hashes[name] === undefined)) return undefined;
    return sha256(canonicalJson({ content: Object.fromEntries(names.map((name) => [name, hashes[name]!])) }));
  };

  const depOutputs = (node: GraphNode): Record<string, DependencyOutputs> => {
    const result: Record<string, DependencyOutputs> = {};
    for (const dep of node.deps) {
      const outputs = outcomes.get(dep)?.outputs;
      if (outputs) result[dep] = outputs;
    }
    return result;
  };

  /** Looks a task up; returns the entry when fresh, else why it must run. */
  const decide = async (
    node: Task<any>,
    keys: Map<string, string>,
  ): Promise<{ manifest: Manifest; fingerprint: string; entry?: CacheEntry; why: string }> => {
    const manifest = await manifestOf(node, keys);
    const fingerprint = fingerprintOf(manifest);
    options.onManifest?.(node.id, manifest);
    if (node.volatile) return { manifest, fingerprint, why: 'runs every time (volatile)' };
    if (options.force?.has(node.id)) return { manifest, fingerprint, why: 'forced' };
    const found = await store.lookup(fingerprint);
    if (found.ok) {
      const gone = await node.checkCached?.(found.value.values, options.memo);
      if (gone) return { manifest, fingerprint, why: `cache entry stale: ${gone}` };
      return { manifest, fingerprint, entry: found.value, why: 'fresh in cache' };
    }
    if (found.error.reason === 'damaged') {
      reporter.event({ type: 'notice', level: 'warn', message: `${node.id}: cache entry damaged (${found.error.detail}); rebuilding it` });
    }
    return {
      manifest,
      fingerprint,
      why: await missReason(store, node, manifest, found.error.reason === 'damaged' ? found.error.detail : undefined),
    };
  };

  // what plan and explain compare with next time: the entries this build used (in the background;
  // the pointers are written by the end of the run)
  const pointerUpdates: Promise<void>[] = [];
  const markUsed = async (id: string, fingerprint: string): Promise<void> => {
    await store.touch(fingerprint);
    // not fatal (the build used the entry either way), but plan and explain would compare with another one
    pointerUpdates.push(
      store.markUsed(id, fingerprint).catch((error: unknown) => {
        reporter.event({ type: 'notice', level: 'warn', message: `${id}: could not record the entry this build used (${(error as Error).message}); plan and explain may compare with an older one` });
      }),
    );
  };

  const runEnd = new Map<string, (note: RunNote) => Promise<void> | void>();
  const context = (run: Omit<NodeRun, 'store' | 'reporter' | 'signal' | 'runEnd'>): NodeRun => ({ store, reporter, signal, runEnd, ...run });

  /** One plain task. */
  const runTaskUnit = async (unit: Unit, node: Task<any>): Promise<void> => {
    const blocked = blockedBy(node);
    if (blocked) return finish(node, { status: 'skipped', reason: blocked });
    if (options.dryRun && node.deps.some((d) => outcomes.get(d)?.pending)) {
      const dep = node.deps.find((d) => outcomes.get(d)?.pending)!;
      options.onManifest?.(node.id, await manifestOf(node, new Map()));
      return finish(node, { status: 'ran', reason: `dependency ${dep} will run`, pending: true });
    }
    const decision = await decide(node, new Map());
    if (decision.entry) {
      if (!options.dryRun) await markUsed(node.id, decision.fingerprint);
      return finish(
        node,
        { status: 'cached', reason: decision.why, key: keyAfterRun(node, decision.fingerprint, decision.entry.values), ...entryOutputs(store, decision.entry) },
        { fingerprint: decision.fingerprint },
      );
    }
    if (options.dryRun) return finish(node, { status: 'ran', reason: decision.why, pending: true }, { fingerprint: decision.fingerprint });
    await acquireSlot(unit);
    try {
      if (signal.aborted) return finish(node, { status: 'skipped', reason: 'build interrupted' });
      reporter.event({ type: 'task', id: node.id, stage: node.stage, status: 'started', reason: decision.why });
      const result = await runTask(node, context({ deps: depOutputs(node), resources: {}, manifest: decision.manifest, fingerprint: decision.fingerprint }));
      await recordRun(node, decision, result);
    } finally {
      releaseSlot();
    }
  };

  const recordRun = async (
    node: Task<any>,
    decision: { fingerprint: string; why: string },
    result: TaskRun,
  ): Promise<void> => {
    if (!result.ok) {
      await finish(node, { status: 'failed', reason: describeTaskFailure(result.error) }, { durationMs: result.durationMs, failure: result.error, fingerprint: decision.fingerprint });
      return;
    }
    const entry = result.entry;
    await finish(
      node,
      { status: 'ran', reason: decision.why, key: keyAfterRun(node, decision.fingerprint, result.values), ...(entry ? entryOutputs(store, entry) : { outputs: { values: result.values, paths: {} } }) },
      { durationMs: result.durationMs, bytes: entry?.bytes ?? 0, fingerprint: decision.fingerprint },
    );
  };

  /** A resource and its users: all cached, or acquire once and run every user in order. */
  const runTransaction = async (unit: Unit): Promise<void> => {
    const resource = unit.resource!;
    const users = unit.ids.filter((id) => id !== resource.id).map((id) => graph.nodes.get(id) as Task<any>);
    const blocked = blockedBy(resource) ?? users.map((user) => blockedBy(user, unit.ids)).find(Boolean);
    if (blocked) {
      for (const id of unit.ids) await finish(graph.nodes.get(id)!, { status: 'skipped', reason: blocked });
      return;
    }
    const pendingDep = unit.deps.find((d) => outcomes.get(d)?.pending);
    if (options.dryRun && pendingDep) {
      for (const id of unit.ids) {
        // explain shows each member's own changes too, beside the dependency that runs first
        options.onManifest?.(id, await manifestOf(graph.nodes.get(id)!, new Map()));
        await finish(graph.nodes.get(id)!, { status: 'ran', reason: `dependency ${pendingDep} will run`, pending: true });
      }
      return;
    }
    // Decide every member with fingerprints chained inside the unit.
    const keys = new Map<string, string>();
    const resourceManifest = await manifestOf(resource, keys);
    keys.set(resource.id, fingerprintOf(resourceManifest));
    const decisions = new Map<string, Awaited<ReturnType<typeof decide>>>();
    for (const user of users) {
      const decision = await decide(user, keys);
      decisions.set(user.id, decision);
      keys.set(user.id, decision.fingerprint);
    }
    const stale = users.find((u) => !decisions.get(u.id)!.entry);
    if (!stale) {
      await finish(resource, { status: 'skipped', reason: 'not needed: every task using it is cached', key: keys.get(resource.id)! });
      for (const user of users) {
        const decision = decisions.get(user.id)!;
        if (!options.dryRun) await markUsed(user.id, decision.fingerprint);
        // the key dependents see is the same whether the member ran or was found (keyedByValues included)
        const key = keyAfterRun(user, decision.fingerprint, decision.entry!.values);
        await finish(user, { status: 'cached', reason: decision.why, key, ...entryOutputs(store, decision.entry!) }, { fingerprint: decision.fingerprint });
      }
      return;
    }
    const restartWhy = (user: Task<any>): string => {
      const own = decisions.get(user.id)!;
      return own.entry ? `transaction reruns: ${stale.id} ${decisions.get(stale.id)!.why}` : own.why;
    };
    if (options.dryRun) {
      await finish(resource, { status: 'ran', reason: `held while ${users.map((u) => u.id).join(', ')} run`, pending: true });
      for (const user of users) await finish(user, { status: 'ran', reason: restartWhy(user), pending: true }, { fingerprint: decisions.get(user.id)!.fingerprint });
      return;
    }
    await acquireSlot(unit);
    try {
      if (signal.aborted) {
        for (const id of unit.ids) await finish(graph.nodes.get(id)!, { status: 'skipped', reason: 'build interrupted' });
        return;
      }
      reporter.event({ type: 'task', id: resource.id, stage: resource.stage, status: 'started', reason: `needed by ${stale.id}` });
      const hold = await holdResource(resource, context({
        deps: depOutputs(resource),
        resources: {},
        manifest: resourceManifest,
        fingerprint: keys.get(resource.id)!,
      }));
      if (!hold.ok) {
        await finish(resource, { status: 'failed', reason: describeTaskFailure(hold.error) }, { durationMs: hold.durationMs, failure: hold.error });
        for (const user of users) await finish(user, { status: 'skipped', reason: `dependency ${resource.id} failed` });
        return;
      }
      outcomes.set(resource.id, { status: 'ran', reason: 'acquired', key: keys.get(resource.id)! });
      let failed: string | undefined;
      try {
        for (const user of users) {
          if (failed || signal.aborted) {
            await finish(user, { status: 'skipped', reason: failed ? `dependency ${failed} failed` : 'build interrupted' });
            continue;
          }
          const decision = decisions.get(user.id)!;
          const why = restartWhy(user);
          reporter.event({ type: 'task', id: user.id, stage: user.stage, status: 'started', reason: why });
          const result = await runTask(user, context({
            deps: depOutputs(user),
            resources: { [resource.id]: hold.handle },
            release: hold.release,
            manifest: decision.manifest,
            fingerprint: decision.fingerprint,
          }));
          await recordRun(user, { fingerprint: decision.fingerprint, why }, result);
          if (!result.ok) failed = user.id;
        }
      } finally {
        const released = await hold.release();
        await hold.close();
        const heldMs = Date.now() - hold.startedAt;
        // how many of its tasks got to run while it was held: after a failure, not all of them
        const held = users.filter((user) => ['ran', 'failed'].includes(outcomes.get(user.id)?.status ?? '')).length;
        const heldFor = held === users.length ? `${held} task(s)` : `${held} of ${users.length} task(s)`;
        if (released.ok) await finish(resource, { status: 'ran', reason: `held for ${heldFor}, then released`, key: keys.get(resource.id)! }, { durationMs: heldMs });
        else await finish(resource, { status: 'failed', reason: `release failed: ${describeTaskFailure(released.error)}` }, { durationMs: heldMs, failure: released.error });
      }
    } finally {
      releaseSlot();
    }
  };



  reporter.begin(options.ids.map((id) => {
    const node = graph.nodes.get(id)!;
    return { id, stage: node.stage, title: node.title, deps: node.deps };
  }));
  const unitOf = new Map<string, Unit>();
  for (const unit of units) for (const id of unit.ids) unitOf.set(id, unit);
  const startUnit = (unit: Unit): Promise<void> => {
    let promise = unitDone.get(unit);
    if (promise) return promise;
    promise = (async () => {
      await Promise.all(unit.deps.map((dep) => startUnit(unitOf.get(dep)!)));
      try {
        if (unit.resource) await runTransaction(unit);
        else await runTaskUnit(unit, graph.nodes.get(unit.ids[0]!) as Task<any>);
      } catch (thrown) {
        // an error of the engine itself (a cache record that cannot be written, a checkCached that
        // threw) fails this unit's tasks like any failure: the others go on, the summary still comes
        const message = thrown instanceof Error ? thrown.message : String(thrown);
        // the first unfinished member is the one it hit; the rest of a transaction never started
        let hit: string | undefined;
        for (const id of unit.ids) {
          if (rows.has(id)) continue;
          if (hit === undefined) {
            hit = id;
            const failure: TaskFailure = { reason: 'threw', message, tail: [] };
            await finish(graph.nodes.get(id)!, { status: 'failed', reason: message }, { failure });
          } else {
            await finish(graph.nodes.get(id)!, { status: 'skipped', reason: `dependency ${hit} failed` });
          }
        }
      }
    })();
    unitDone.set(unit, promise);
    return promise;
  };
  // every unit settles before the run's cleanups, even when one threw: a daemon the run started is stopped either way
  const settled = await Promise.allSettled(units.map(startUnit));
  await Promise.all(pointerUpdates);
  const note: RunNote = (level, message) => reporter.event({ type: 'notice', level, message });
  for (const [key, fn] of [...runEnd].reverse()) {
    try {
      await fn(note);
    } catch (error) {
      reporter.event({ type: 'notice', level: 'warn', message: `run cleanup "${key}" failed: ${(error as Error).message}` });
    }
  }
  const crashed = settled.find((result): result is PromiseRejectedResult => result.status === 'rejected');
  if (crashed) throw crashed.reason;
  const tasks = options.ids.map((id) => rows.get(id)!).filter(Boolean);
  // A signal that came once every task had finished (during the run's cleanups, such as stopping a
  // daemon) cut nothing short: the build is complete and says so.
  // a resource (the mount) is skipped, not cached, when every task that uses it is cached
  const complete = tasks.every((t) => t.status === 'ran' || t.status === 'cached' || isResource(graph.nodes.get(t.id)!));
  const interrupted = signal.aborted && !complete;
  if (signal.aborted && complete && !options.dryRun) {
    reporter.event({ type: 'notice', level: 'info', message: 'the signal came after every task had finished: the build is complete' });
  }
  return {
    ok: tasks.every((t) => t.status !== 'failed') && !interrupted,
    interrupted,
    durationMs: Date.now() - started,
    tasks,
  };
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
function keyAfterRun(node: Task<any>, fingerprint: string, values: Readonly<Record<string, Json>>): string {
  if (Array.isArray(node.keyedByValues)) {
    return sha256(canonicalJson(Object.fromEntries(node.keyedByValues.filter((name) => name in values).map((name) => [name, values[name]!])) as Json));
  }
  return node.volatile || node.keyedByValues ? sha256(canonicalJson(values as Json)) : fingerprint;
}

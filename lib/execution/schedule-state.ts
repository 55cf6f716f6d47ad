import { entryOutputs, type CacheStore } from '../caching/cache-store.ts';
import { exportArtifacts } from '../caching/export-artifact.ts';
import type { HashMemo } from '../caching/file-hash.ts';
import type { Manifest } from '../caching/fingerprint.ts';
import { describeTaskFailure } from '../engine/failure.ts';
import type { Graph } from '../engine/graph.ts';
import { isResource, type DependencyOutputs, type GraphNode, type RunNote, type Task } from '../engine/task.ts';
import { keyAfterRun, type Decision } from './decide.ts';
import type { NodeRun, TaskRun } from './run-node.ts';
import type { Reporter, SummaryRow, TaskStatus } from '../logging/events.ts';
import type { Unit } from './units.ts';

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
export interface Outcome {
  readonly status: TaskStatus;
  readonly reason: string;
  readonly key?: string;
  readonly outputs?: DependencyOutputs;
  /** sha256 of each file and folder artifact, as recorded at publish (for `keyedOnContent`). */
  readonly hashes?: Readonly<Record<string, string>>;
  /** Plan mode: the node would run, so dependents cannot know their fingerprint yet. */
  readonly pending?: boolean;
}

/** What a schedule knows while it runs, shared by the code that decides and runs its units. */
export interface ScheduleState {
  readonly options: ScheduleOptions;
  /** Each finished node's outcome, by id (a held resource's too, while its users run). */
  readonly outcomes: Map<string, Outcome>;
  /** The summary row of each finished node, by id. */
  readonly rows: Map<string, SummaryRow>;
  /** Run-scoped cleanups by key (see TaskContext.atRunEnd), run once every unit has settled. */
  readonly runEnd: Map<string, (note: RunNote) => Promise<void> | void>;
  /** Writes of the entries this build used, awaited before the run ends. */
  readonly pointerUpdates: Promise<void>[];
  /** Waits for a free slot, the unit's priority deciding who goes first. */
  acquireSlot(unit: Unit): Promise<void>;
  releaseSlot(): void;
}

/**
 * Records a node's outcome: places its exported artifacts (a failure there fails the node), keeps
 * its summary row and reports it.
 */
export async function finish(state: ScheduleState, node: GraphNode, planned: Outcome, extra: Partial<SummaryRow> = {}): Promise<void> {
  const outcome = await exportOutputs(state, node, planned);
  state.outcomes.set(node.id, outcome);
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
  state.rows.set(node.id, row);
  state.options.reporter.event({
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
}

/** Places a finished task's exported artifacts at their user-facing paths. */
async function exportOutputs(state: ScheduleState, node: GraphNode, outcome: Outcome): Promise<Outcome> {
  const { dryRun, signal, reporter } = state.options;
  if (dryRun || isResource(node) || !node.exports || (outcome.status !== 'ran' && outcome.status !== 'cached')) return outcome;
  try {
    const pairs = node.exports.map(({ artifact, to, from }) => {
      const source = (from === undefined ? outcome : state.outcomes.get(from))?.outputs?.paths[artifact];
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
}

/** Why a node cannot run because of its dependencies (those outside `inside`), if it cannot. */
export function blockedBy(state: ScheduleState, node: GraphNode, inside: readonly string[] = []): string | undefined {
  for (const dep of node.deps) {
    if (inside.includes(dep)) continue;
    const outcome = state.outcomes.get(dep);
    if (outcome?.status === 'failed') return `dependency ${dep} failed`;
    if (outcome?.status === 'skipped' && !isResource(state.options.graph.nodes.get(dep)!)) return `dependency ${dep} was skipped`;
  }
  if (state.options.signal.aborted) return 'build interrupted';
  return undefined;
}

/** The outputs of the node's finished dependencies, by id. */
export function depOutputs(state: ScheduleState, node: GraphNode): Record<string, DependencyOutputs> {
  const result: Record<string, DependencyOutputs> = {};
  for (const dep of node.deps) {
    const outputs = state.outcomes.get(dep)?.outputs;
    if (outputs) result[dep] = outputs;
  }
  return result;
}

/** The dependency that would run first in plan mode, if any. */
export function pendingDep(state: ScheduleState, deps: readonly string[]): string | undefined {
  return deps.find((dep) => state.outcomes.get(dep)?.pending);
}

/** A node's run with the schedule's store, reporter, signal and run-end cleanups. */
export function nodeRun(state: ScheduleState, run: Omit<NodeRun, 'store' | 'reporter' | 'signal' | 'runEnd'>): NodeRun {
  const { store, reporter, signal } = state.options;
  return { store, reporter, signal, runEnd: state.runEnd, ...run };
}

/** Records a task that ran: failed with its failure, or ran with its entry's outputs. */
export async function recordRun(state: ScheduleState, node: Task<any>, decision: Pick<Decision, 'fingerprint' | 'why'>, result: TaskRun): Promise<void> {
  const { fingerprint, why } = decision;
  if (!result.ok) {
    await finish(state, node, { status: 'failed', reason: describeTaskFailure(result.error) }, { durationMs: result.durationMs, failure: result.error, fingerprint });
    return;
  }
  const { entry } = result;
  const outputs = entry ? entryOutputs(state.options.store, entry) : { outputs: { values: result.values, paths: {} } };
  await finish(
    state,
    node,
    { status: 'ran', reason: why, key: keyAfterRun(node, fingerprint, result.values), ...outputs },
    { durationMs: result.durationMs, bytes: entry?.bytes ?? 0, fingerprint },
  );
}

import type { Task, RunNote } from '../engine/task.ts';
import { isResource } from '../engine/task.ts';
import type { TaskFailure } from '../engine/failure.ts';
import type { RunSummary } from '../logging/events.ts';
import { runTaskUnit } from './run-task-unit.ts';
import { runTransaction } from './run-transaction.ts';
import { finish, type ScheduleOptions, type ScheduleState } from './schedule-state.ts';
import { createSlotPool } from './slot-pool.ts';
import { groupUnits, unitPriorities, type Unit } from './units.ts';

export type { ScheduleOptions } from './schedule-state.ts';

/**
 * Runs the selected nodes: independent units at the same time (up to `concurrency`),
 * each node either taken from the cache or run; failures skip dependents only.
 */
export async function schedule(options: ScheduleOptions): Promise<RunSummary> {
  const { graph, reporter, signal } = options;
  const started = Date.now();
  const units = groupUnits(graph, options.ids);
  const priorities = unitPriorities(units);
  const slots = createSlotPool(options.concurrency);
  const state: ScheduleState = {
    options,
    outcomes: new Map(),
    rows: new Map(),
    runEnd: new Map(),
    pointerUpdates: [],
    acquireSlot: (unit) => slots.acquire(priorities.get(unit) ?? 0),
    releaseSlot: () => slots.release(),
  };

  reporter.begin(options.ids.map((id) => {
    const node = graph.nodes.get(id)!;
    return { id, stage: node.stage, title: node.title, deps: node.deps };
  }));
  const unitOf = new Map<string, Unit>();
  for (const unit of units) for (const id of unit.ids) unitOf.set(id, unit);
  const unitDone = new Map<Unit, Promise<void>>();
  // a unit starts once the units it depends on are done, whatever their outcome (a unit records its own errors: failUnit)
  const startUnit = (unit: Unit): Promise<void> => {
    let promise = unitDone.get(unit);
    if (promise) return promise;
    promise = (async () => {
      await Promise.all(unit.deps.map((dep) => startUnit(unitOf.get(dep)!)));
      try {
        if (unit.resource) await runTransaction(state, unit);
        else await runTaskUnit(state, unit, graph.nodes.get(unit.ids[0]!) as Task<any>);
      } catch (thrown) {
        await failUnit(state, unit, thrown);
      }
    })();
    unitDone.set(unit, promise);
    return promise;
  };
  // every unit settles before the run's cleanups, even when one threw: a daemon the run started is stopped either way
  const settled = await Promise.allSettled(units.map(startUnit));
  await Promise.all(state.pointerUpdates);
  await runEndCleanups(state);
  const crashed = settled.find((result): result is PromiseRejectedResult => result.status === 'rejected');
  if (crashed) throw crashed.reason;
  const tasks = options.ids.map((id) => state.rows.get(id)!).filter(Boolean);
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

/**
 * An error of the engine itself (a cache record that cannot be written, a checkCached that threw)
 * fails the unit's tasks like any failure: the others go on, the summary still comes.
 */
async function failUnit(state: ScheduleState, unit: Unit, thrown: unknown): Promise<void> {
  const message = thrown instanceof Error ? thrown.message : String(thrown);
  // the first unfinished member is the one it hit; the rest of a transaction never started
  let hit: string | undefined;
  for (const id of unit.ids) {
    if (state.rows.has(id)) continue;
    const node = state.options.graph.nodes.get(id)!;
    if (hit === undefined) {
      hit = id;
      const failure: TaskFailure = { reason: 'threw', message, tail: [] };
      await finish(state, node, { status: 'failed', reason: message }, { failure });
    } else {
      await finish(state, node, { status: 'skipped', reason: `dependency ${hit} failed` });
    }
  }
}

/** The run's cleanups (see TaskContext.atRunEnd), last registered first; what they say becomes notices. */
async function runEndCleanups(state: ScheduleState): Promise<void> {
  const { reporter } = state.options;
  const note: RunNote = (level, message) => reporter.event({ type: 'notice', level, message });
  for (const [key, fn] of [...state.runEnd].reverse()) {
    try {
      await fn(note);
    } catch (error) {
      reporter.event({ type: 'notice', level: 'warn', message: `run cleanup "${key}" failed: ${(error as Error).message}` });
    }
  }
}

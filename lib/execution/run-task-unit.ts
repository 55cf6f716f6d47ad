import { entryOutputs } from '../caching/cache-store.ts';
import type { Task } from '../engine/task.ts';
import { decide, keyAfterRun, manifestOf, markUsed } from './decide.ts';
import { runTask } from './run-node.ts';
import { blockedBy, depOutputs, finish, nodeRun, pendingDep, recordRun, type ScheduleState } from './schedule-state.ts';
import type { Unit } from './units.ts';

/** Runs a unit of one plain task: skipped, taken from the cache, or run in a slot. */
export async function runTaskUnit(state: ScheduleState, unit: Unit, node: Task<any>): Promise<void> {
  const { options } = state;
  const blocked = blockedBy(state, node);
  if (blocked) return finish(state, node, { status: 'skipped', reason: blocked });
  const pending = options.dryRun ? pendingDep(state, node.deps) : undefined;
  if (pending !== undefined) {
    options.onManifest?.(node.id, await manifestOf(state, node));
    return finish(state, node, { status: 'ran', reason: `dependency ${pending} will run`, pending: true });
  }
  const decision = await decide(state, node);
  if (decision.entry) {
    if (!options.dryRun) await markUsed(state, node.id, decision.fingerprint);
    const key = keyAfterRun(node, decision.fingerprint, decision.entry.values);
    return finish(state, node, { status: 'cached', reason: decision.why, key, ...entryOutputs(options.store, decision.entry) }, { fingerprint: decision.fingerprint });
  }
  if (options.dryRun) return finish(state, node, { status: 'ran', reason: decision.why, pending: true }, { fingerprint: decision.fingerprint });
  await state.acquireSlot(unit);
  try {
    if (options.signal.aborted) return finish(state, node, { status: 'skipped', reason: 'build interrupted' });
    options.reporter.event({ type: 'task', id: node.id, stage: node.stage, status: 'started', reason: decision.why });
    const result = await runTask(node, nodeRun(state, { deps: depOutputs(state, node), resources: {}, manifest: decision.manifest, fingerprint: decision.fingerprint }));
    await recordRun(state, node, decision, result);
  } finally {
    state.releaseSlot();
  }
}

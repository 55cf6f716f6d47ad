import { entryOutputs } from '../caching/cache-store.ts';
import { fingerprintOf, type Manifest } from '../caching/fingerprint.ts';
import { describeTaskFailure } from '../engine/failure.ts';
import type { ResourceTask, Task } from '../engine/task.ts';
import { decide, keyAfterRun, manifestOf, markUsed, type Decision } from './decide.ts';
import { holdResource, runTask } from './run-node.ts';
import { blockedBy, depOutputs, finish, nodeRun, pendingDep, recordRun, type ScheduleState } from './schedule-state.ts';
import type { Unit } from './units.ts';

/** A transaction's members, decided with fingerprints chained inside the unit. */
interface Decided {
  readonly resource: ResourceTask<any, any>;
  readonly users: readonly Task<any>[];
  /** Each member's key: the resource's fingerprint, then each user's. */
  readonly keys: ReadonlyMap<string, string>;
  readonly resourceManifest: Manifest;
  readonly decisions: ReadonlyMap<string, Decision>;
}

/**
 * A resource and its users: all cached, or acquire the resource once and run every user in order
 * while it is held, then release it.
 */
export async function runTransaction(state: ScheduleState, unit: Unit): Promise<void> {
  const { graph, dryRun, onManifest } = state.options;
  const resource = unit.resource!;
  const users = unit.ids.filter((id) => id !== resource.id).map((id) => graph.nodes.get(id) as Task<any>);
  const blocked = blockedBy(state, resource) ?? users.map((user) => blockedBy(state, user, unit.ids)).find(Boolean);
  if (blocked) {
    for (const id of unit.ids) await finish(state, graph.nodes.get(id)!, { status: 'skipped', reason: blocked });
    return;
  }
  const pending = dryRun ? pendingDep(state, unit.deps) : undefined;
  if (pending !== undefined) {
    for (const id of unit.ids) {
      // explain shows each member's own changes too, beside the dependency that runs first
      onManifest?.(id, await manifestOf(state, graph.nodes.get(id)!));
      await finish(state, graph.nodes.get(id)!, { status: 'ran', reason: `dependency ${pending} will run`, pending: true });
    }
    return;
  }
  const decided = await decideMembers(state, resource, users);
  const stale = users.find((user) => !decided.decisions.get(user.id)!.entry);
  if (!stale) return finishCached(state, decided);
  // why each user runs: its own reason, or the one that makes the whole transaction run
  const why = (user: Task<any>): string => {
    const own = decided.decisions.get(user.id)!;
    return own.entry ? `transaction reruns: ${stale.id} ${decided.decisions.get(stale.id)!.why}` : own.why;
  };
  if (dryRun) {
    await finish(state, resource, { status: 'ran', reason: `held while ${users.map((u) => u.id).join(', ')} run`, pending: true });
    for (const user of users) await finish(state, user, { status: 'ran', reason: why(user), pending: true }, { fingerprint: decided.decisions.get(user.id)!.fingerprint });
    return;
  }
  await state.acquireSlot(unit);
  try {
    if (state.options.signal.aborted) {
      for (const id of unit.ids) await finish(state, graph.nodes.get(id)!, { status: 'skipped', reason: 'build interrupted' });
      return;
    }
    await holdAndRun(state, decided, stale.id, why);
  } finally {
    state.releaseSlot();
  }
}

async function decideMembers(state: ScheduleState, resource: ResourceTask<any, any>, users: readonly Task<any>[]): Promise<Decided> {
  const keys = new Map<string, string>();
  const resourceManifest = await manifestOf(state, resource, keys);
  keys.set(resource.id, fingerprintOf(resourceManifest));
  const decisions = new Map<string, Decision>();
  for (const user of users) {
    const decision = await decide(state, user, keys);
    decisions.set(user.id, decision);
    keys.set(user.id, decision.fingerprint);
  }
  return { resource, users, keys, resourceManifest, decisions };
}

/** Every user is cached: the resource is not acquired at all. */
async function finishCached(state: ScheduleState, { resource, users, keys, decisions }: Decided): Promise<void> {
  await finish(state, resource, { status: 'skipped', reason: 'not needed: every task using it is cached', key: keys.get(resource.id)! });
  for (const user of users) {
    const decision = decisions.get(user.id)!;
    if (!state.options.dryRun) await markUsed(state, user.id, decision.fingerprint);
    // the key dependents see is the same whether the member ran or was found (keyedByValues included)
    const key = keyAfterRun(user, decision.fingerprint, decision.entry!.values);
    await finish(state, user, { status: 'cached', reason: decision.why, key, ...entryOutputs(state.options.store, decision.entry!) }, { fingerprint: decision.fingerprint });
  }
}

/** Acquires the resource, runs the users in order (a failure skips the rest), and releases it. */
async function holdAndRun(state: ScheduleState, decided: Decided, neededBy: string, why: (user: Task<any>) => string): Promise<void> {
  const { resource, users, keys, resourceManifest, decisions } = decided;
  const { reporter, signal } = state.options;
  reporter.event({ type: 'task', id: resource.id, stage: resource.stage, status: 'started', reason: `needed by ${neededBy}` });
  const hold = await holdResource(resource, nodeRun(state, {
    deps: depOutputs(state, resource),
    resources: {},
    manifest: resourceManifest,
    fingerprint: keys.get(resource.id)!,
  }));
  if (!hold.ok) {
    await finish(state, resource, { status: 'failed', reason: describeTaskFailure(hold.error) }, { durationMs: hold.durationMs, failure: hold.error });
    for (const user of users) await finish(state, user, { status: 'skipped', reason: `dependency ${resource.id} failed` });
    return;
  }
  state.outcomes.set(resource.id, { status: 'ran', reason: 'acquired', key: keys.get(resource.id)! });
  let failed: string | undefined;
  try {
    for (const user of users) {
      if (failed || signal.aborted) {
        await finish(state, user, { status: 'skipped', reason: failed ? `dependency ${failed} failed` : 'build interrupted' });
        continue;
      }
      const decision = decisions.get(user.id)!;
      const reason = why(user);
      reporter.event({ type: 'task', id: user.id, stage: user.stage, status: 'started', reason });
      const result = await runTask(user, nodeRun(state, {
        deps: depOutputs(state, user),
        resources: { [resource.id]: hold.handle },
        release: hold.release,
        manifest: decision.manifest,
        fingerprint: decision.fingerprint,
      }));
      await recordRun(state, user, { fingerprint: decision.fingerprint, why: reason }, result);
      if (!result.ok) failed = user.id;
    }
  } finally {
    const released = await hold.release();
    await hold.close();
    const heldMs = Date.now() - hold.startedAt;
    // how many of its tasks got to run while it was held: after a failure, not all of them
    const held = users.filter((user) => ['ran', 'failed'].includes(state.outcomes.get(user.id)?.status ?? '')).length;
    const heldFor = held === users.length ? `${held} task(s)` : `${held} of ${users.length} task(s)`;
    const key = keys.get(resource.id)!;
    if (released.ok) await finish(state, resource, { status: 'ran', reason: `held for ${heldFor}, then released`, key }, { durationMs: heldMs });
    else await finish(state, resource, { status: 'failed', reason: `release failed: ${describeTaskFailure(released.error)}` }, { durationMs: heldMs, failure: released.error });
  }
}

// Units of scheduling: a task alone, or a resource with the tasks that use it (one transaction).
import type { Graph } from '../engine/graph.ts';
import { isResource, type ResourceTask } from '../engine/task.ts';

/** A unit of scheduling: one task, or a resource with the tasks that use it (one transaction). */
export interface Unit {
  readonly ids: readonly string[];
  readonly resource?: ResourceTask<any, any>;
  /** Dependencies outside the unit. */
  readonly deps: readonly string[];
}

/** Splits the selection into units: each resource swallows its users; other tasks stand alone. */
export function groupUnits(graph: Graph, ids: readonly string[]): Unit[] {
  const selected = new Set(ids);
  const ownerOf = new Map<string, string>();
  for (const id of ids) {
    const node = graph.nodes.get(id)!;
    if (!isResource(node)) continue;
    ownerOf.set(id, id);
    for (const user of graph.dependents.get(id) ?? []) if (selected.has(user)) ownerOf.set(user, id);
  }
  const units: Unit[] = [];
  const byOwner = new Map<string, string[]>();
  for (const id of ids) {
    const owner = ownerOf.get(id);
    if (owner === undefined) {
      units.push({ ids: [id], deps: [...graph.nodes.get(id)!.deps] });
      continue;
    }
    if (!byOwner.has(owner)) byOwner.set(owner, []);
    byOwner.get(owner)!.push(id);
  }
  for (const [owner, members] of byOwner) {
    const inside = new Set(members);
    const deps = new Set<string>();
    for (const id of members) for (const dep of graph.nodes.get(id)!.deps) if (!inside.has(dep)) deps.add(dep);
    units.push({ ids: members, resource: graph.nodes.get(owner) as ResourceTask<any, any>, deps: [...deps] });
  }
  return units;
}

/**
 * Each unit's longest chain of work to the end of the build, counting one per task (a
 * transaction counts its members): units on the critical path get free slots first.
 */
export function unitPriorities(units: readonly Unit[]): Map<Unit, number> {
  const unitOf = new Map<string, Unit>();
  for (const unit of units) for (const id of unit.ids) unitOf.set(id, unit);
  const after = new Map<Unit, Set<Unit>>(units.map((unit) => [unit, new Set<Unit>()]));
  for (const unit of units) {
    for (const dep of unit.deps) {
      const before = unitOf.get(dep);
      if (before && before !== unit) after.get(before)!.add(unit);
    }
  }
  const priorities = new Map<Unit, number>();
  const chain = (unit: Unit): number => {
    const known = priorities.get(unit);
    if (known !== undefined) return known;
    let longest = 0;
    for (const next of after.get(unit)!) longest = Math.max(longest, chain(next));
    const own = unit.resource ? unit.ids.length - 1 : 1;
    priorities.set(unit, own + longest);
    return own + longest;
  };
  for (const unit of units) chain(unit);
  return priorities;
}

/** Makes a selection whole: a resource's users run together, so selecting one selects all. */
export function completeTransactions(graph: Graph, ids: readonly string[]): string[] {
  const wanted = new Set(ids);
  let grew = true;
  while (grew) {
    grew = false;
    for (const id of [...wanted]) {
      const node = graph.nodes.get(id)!;
      for (const dep of node.deps) {
        const depNode = graph.nodes.get(dep)!;
        if (!isResource(depNode)) continue;
        for (const user of graph.dependents.get(dep) ?? []) {
          if (!wanted.has(user)) {
            wanted.add(user);
            grew = true;
          }
        }
      }
      for (const dep of node.deps) {
        if (!wanted.has(dep)) {
          wanted.add(dep);
          grew = true;
        }
      }
    }
  }
  return graph.order.filter((id) => wanted.has(id));
}

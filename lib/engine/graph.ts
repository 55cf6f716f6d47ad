import type { GraphError } from './failure.ts';
import { isResource, type GraphNode } from './task.ts';
import { fail, ok, type Result } from './result.ts';

/** A checked graph: nodes by id in a dependency-respecting order. */
export interface Graph {
  readonly nodes: ReadonlyMap<string, GraphNode>;
  /** Every id, dependencies before dependents; ties keep declaration order. */
  readonly order: readonly string[];
  /** Direct dependents of each id. */
  readonly dependents: ReadonlyMap<string, readonly string[]>;
}

/** Checks ids, dependencies, cycles and inputs before anything runs. */
export function buildGraph(list: readonly GraphNode[]): Result<Graph, GraphError> {
  const nodes = new Map<string, GraphNode>();
  for (const node of list) {
    if (nodes.has(node.id)) return fail({ reason: 'duplicate-task', id: node.id });
    nodes.set(node.id, node);
  }
  for (const node of list) {
    for (const dep of node.deps) {
      if (!nodes.has(dep)) return fail({ reason: 'unknown-dependency', id: node.id, dependency: dep });
    }
    // another task's artifact is only there, and settled, once that task is a dependency
    for (const exported of ('exports' in node ? node.exports : undefined) ?? []) {
      if (exported.from !== undefined && !node.deps.includes(exported.from)) {
        return fail({ reason: 'export-not-from-dependency', id: node.id, from: exported.from });
      }
    }
    if (node.inputsSchema) {
      const parsed = node.inputsSchema.safeParse(node.inputs);
      if (!parsed.success) {
        const message = parsed.error.issues.map((i) => `${i.path.join('.') || '(inputs)'}: ${i.message}`).join('; ');
        return fail({ reason: 'invalid-inputs', id: node.id, message });
      }
    }
  }
  for (const node of list) {
    if (isResource(node)) continue;
    // a key from no values at all would never change, and dependents would never rerun
    const values = node.artifacts.filter((a) => a.kind === 'value').map((a) => a.name);
    if (Array.isArray(node.keyedByValues)) {
      const value = node.keyedByValues.length === 0 ? '(none named)' : node.keyedByValues.find((name) => !values.includes(name));
      if (value !== undefined) return fail({ reason: 'keyed-values-invalid', id: node.id, value });
    }
    for (const [dependency, names] of Object.entries(node.keyedOnContent ?? {})) {
      const producer = nodes.get(dependency);
      if (!node.deps.includes(dependency) || !producer) return fail({ reason: 'content-key-invalid', id: node.id, dependency });
      // inside one transaction the dependency publishes only at its end: its content is not known yet
      const shared = node.deps.find((dep) => nodes.get(dep) !== undefined && isResource(nodes.get(dep)!) && producer.deps.includes(dep));
      if (shared !== undefined) return fail({ reason: 'content-key-invalid', id: node.id, dependency, resource: shared });
      // disks carry no content hash (they are never hashed at publish)
      const hashed = isResource(producer) ? [] : producer.artifacts.filter((a) => a.kind === 'file' || a.kind === 'folder').map((a) => a.name);
      const artifact = names.find((name) => !hashed.includes(name));
      if (artifact !== undefined) return fail({ reason: 'content-key-invalid', id: node.id, dependency, artifact });
    }
  }
  const cycle = findCycle(list, nodes);
  if (cycle) return fail({ reason: 'cycle', path: cycle });
  const order: string[] = [];
  const placed = new Set<string>();
  const visit = (id: string): void => {
    if (placed.has(id)) return;
    for (const dep of nodes.get(id)!.deps) visit(dep);
    placed.add(id);
    order.push(id);
  };
  for (const node of list) visit(node.id);
  const dependents = new Map<string, string[]>(list.map((n) => [n.id, []]));
  for (const node of list) for (const dep of node.deps) dependents.get(dep)!.push(node.id);
  return ok({ nodes, order, dependents });
}

/** Depth-first search for a back edge; returns the cycle as a path that starts and ends on one id. */
function findCycle(list: readonly GraphNode[], nodes: ReadonlyMap<string, GraphNode>): string[] | undefined {
  const state = new Map<string, 'open' | 'done'>();
  const stack: string[] = [];
  const visit = (id: string): string[] | undefined => {
    const seen = state.get(id);
    if (seen === 'done') return undefined;
    if (seen === 'open') return [...stack.slice(stack.indexOf(id)), id];
    state.set(id, 'open');
    stack.push(id);
    for (const dep of nodes.get(id)!.deps) {
      const found = visit(dep);
      if (found) return found;
    }
    stack.pop();
    state.set(id, 'done');
    return undefined;
  };
  for (const node of list) {
    const found = visit(node.id);
    if (found) return found.reverse(); // read in the direction work flows
  }
  return undefined;
}

/**
 * Resolves targets (task ids or stage names) to ids; no target means every task. A stage name means
 * every task of the stage, also when one of them has the stage's name as its id.
 */
export function resolveTargets(graph: Graph, targets: readonly string[]): Result<string[], GraphError> {
  if (targets.length === 0) return ok([...graph.order]);
  const ids: string[] = [];
  for (const target of targets) {
    const node = graph.nodes.get(target);
    // a task named like its own stage (install, beside install:esp) stands for the stage, as documented
    if (node && node.stage !== target) {
      ids.push(target);
      continue;
    }
    const byStage = graph.order.filter((id) => graph.nodes.get(id)!.stage === target);
    if (byStage.length === 0) {
      const known = [...new Set([...graph.order, ...graph.order.map((id) => graph.nodes.get(id)!.stage)])];
      return fail({ reason: 'unknown-target', target, known });
    }
    ids.push(...byStage);
  }
  return ok(ids);
}

/**
 * For `build` and `run`: a resource (mount) publishes nothing, so naming it means the tasks that
 * run while it is held; `run mount --force` reruns them.
 */
export function runnableTargets(graph: Graph, ids: readonly string[]): string[] {
  return [...new Set(ids.flatMap((id) => (isResource(graph.nodes.get(id)!) ? (graph.dependents.get(id) ?? []) : [id])))];
}

/** The targets and everything they depend on, in graph order. */
export function closure(graph: Graph, ids: readonly string[]): string[] {
  const wanted = new Set<string>();
  const add = (id: string): void => {
    if (wanted.has(id)) return;
    wanted.add(id);
    for (const dep of graph.nodes.get(id)!.deps) add(dep);
  };
  ids.forEach(add);
  return graph.order.filter((id) => wanted.has(id));
}

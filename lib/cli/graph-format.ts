import type { Graph } from '../engine/graph.ts';
import type { TaskStatus } from '../logging/events.ts';

/** A node's state for colouring: what `plan` says build would do with it. */
export type GraphState = TaskStatus | 'stale';

const colours: Record<GraphState, string> = {
  cached: '#b7e4c7',
  ran: '#ffe8a3',
  stale: '#ffe8a3',
  skipped: '#dddddd',
  failed: '#f4a6a6',
};

const safeId = (id: string): string => id.replace(/[^A-Za-z0-9_]/g, '_');

/** Mermaid flowchart, one class per state (cached green, stale yellow, failed red). */
export function toMermaid(graph: Graph, states: ReadonlyMap<string, GraphState>): string {
  const lines = ['flowchart LR'];
  for (const id of graph.order) {
    const state = states.get(id);
    lines.push(`  ${safeId(id)}["${id}${state ? `<br/><i>${state}</i>` : ''}"]${state ? `:::${state}` : ''}`);
  }
  for (const id of graph.order) for (const dep of graph.nodes.get(id)!.deps) lines.push(`  ${safeId(dep)} --> ${safeId(id)}`);
  for (const [state, colour] of Object.entries(colours)) lines.push(`  classDef ${state} fill:${colour},stroke:#555`);
  return `${lines.join('\n')}\n`;
}

/** Graphviz dot, nodes filled by state. */
export function toDot(graph: Graph, states: ReadonlyMap<string, GraphState>): string {
  const lines = ['digraph tasks {', '  rankdir=LR;', '  node [shape=box, style="rounded,filled", fillcolor=white];'];
  for (const id of graph.order) {
    const state = states.get(id);
    const label = state ? `${id}\\n${state}` : id;
    lines.push(`  "${id}" [label="${label}"${state ? `, fillcolor="${colours[state]}"` : ''}];`);
  }
  for (const id of graph.order) for (const dep of graph.nodes.get(id)!.deps) lines.push(`  "${dep}" -> "${id}";`);
  lines.push('}');
  return `${lines.join('\n')}\n`;
}

// Reads V8 .cpuprofile files (node --cpu-prof) and says where the time went:
// self time per module (package, project file, Node internals) and a wall-clock timeline
// of when chosen functions first and last ran.
import { readFile } from 'node:fs/promises';
import path from 'node:path';

/** The subset of the V8 CPU profile format this reads. */
interface ProfileNode {
  readonly id: number;
  readonly callFrame: { readonly functionName: string; readonly url: string };
  readonly children?: readonly number[];
}

interface CpuProfile {
  readonly nodes: readonly ProfileNode[];
  readonly startTime: number;
  readonly endTime: number;
  readonly samples: readonly number[];
  readonly timeDeltas: readonly number[];
}

/** Self time of one bucket of code. */
export interface ModuleTime {
  readonly module: string;
  readonly ms: number;
}

/** First and last sample (ms from profile start) in which a function was on the stack. */
export interface Span {
  readonly fn: string;
  readonly firstMs: number;
  readonly lastMs: number;
  /** Sampled time with the function on the stack. */
  readonly ms: number;
}

/** What one profile says. */
export interface ProfileSummary {
  readonly file: string;
  readonly wallMs: number;
  /** Sampled time that was not idle. */
  readonly busyMs: number;
  readonly byModule: readonly ModuleTime[];
  readonly spans: readonly Span[];
}

/** Names code by where it lives: an npm package, a project file, Node internals, or V8 pseudo-frames. */
export function moduleOf(url: string, functionName: string, root: string): string {
  if (!url) return functionName.startsWith('(') ? functionName : '(native)';
  const clean = url.replace(/^file:\/\//, '').replace(/\?.*$/, '');
  const pkg = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(clean);
  if (pkg) return `npm:${pkg[1]}`;
  if (clean.startsWith('node:')) return `node:${clean.slice(5).split('/')[1] ?? clean.slice(5)}`;
  if (clean.startsWith(root)) return path.relative(root, clean);
  return clean;
}

/** Summarises one .cpuprofile: self time per module and the spans of `functions` (name@file-suffix or name). */
export async function summariseProfile(file: string, root: string, functions: readonly string[] = []): Promise<ProfileSummary> {
  const profile = JSON.parse(await readFile(file, 'utf8')) as CpuProfile;
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const node of profile.nodes) for (const child of node.children ?? []) parent.set(child, node.id);
  const self = new Map<string, number>();
  const spans = new Map<string, { first: number; last: number; ms: number }>();
  let t = 0;
  let busy = 0;
  for (let i = 0; i < profile.samples.length; i++) {
    const delta = (profile.timeDeltas[i] ?? 0) / 1000;
    t += delta;
    const node = byId.get(profile.samples[i]!);
    if (!node) continue;
    const bucket = moduleOf(node.callFrame.url, node.callFrame.functionName, root);
    self.set(bucket, (self.get(bucket) ?? 0) + delta);
    if (bucket !== '(idle)') busy += delta;
    const seen = new Set<string>();
    for (let id: number | undefined = node.id; id !== undefined; id = parent.get(id)) {
      const frame = byId.get(id)!.callFrame;
      for (const wanted of functions) {
        if (seen.has(wanted) || !matches(wanted, frame)) continue;
        seen.add(wanted);
        const span = spans.get(wanted) ?? { first: t, last: t, ms: 0 };
        span.last = t;
        span.ms += delta;
        spans.set(wanted, span);
      }
    }
  }
  const byModule = [...self].map(([module, ms]) => ({ module, ms })).sort((a, b) => b.ms - a.ms);
  return {
    file,
    wallMs: (profile.endTime - profile.startTime) / 1000,
    busyMs: busy,
    byModule,
    spans: functions.filter((f) => spans.has(f)).map((fn) => ({ fn, firstMs: spans.get(fn)!.first, lastMs: spans.get(fn)!.last, ms: spans.get(fn)!.ms })),
  };
}

function matches(wanted: string, frame: { functionName: string; url: string }): boolean {
  const [name, fileSuffix] = wanted.split('@') as [string, string | undefined];
  if (frame.functionName !== name) return false;
  return fileSuffix === undefined || frame.url.replace(/\?.*$/, '').endsWith(fileSuffix);
}

/** Adds up module times of several summaries (e.g. main thread and loader thread). */
export function mergeModules(summaries: readonly ProfileSummary[]): ModuleTime[] {
  const total = new Map<string, number>();
  for (const s of summaries) for (const m of s.byModule) total.set(m.module, (total.get(m.module) ?? 0) + m.ms);
  return [...total].map(([module, ms]) => ({ module, ms })).sort((a, b) => b.ms - a.ms);
}

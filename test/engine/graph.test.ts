import { describe, expect, it } from 'vitest';
import { buildGraph, closure, resolveTargets, runnableTargets } from '../../lib/engine/graph.ts';
import type { GraphNode, Task } from '../../lib/engine/task.ts';

const t = (id: string, deps: string[] = [], stage = id): Task => ({
  id, stage, title: id, deps, inputs: {}, version: 1, artifacts: [], run: async () => undefined,
});

describe('graph checks', () => {
  it('orders dependencies first', () => {
    const graph = buildGraph([t('d', ['b', 'c']), t('b', ['a']), t('a'), t('c')]);
    expect(graph.ok && graph.value.order).toEqual(['a', 'b', 'c', 'd']);
  });
  it('reports a cycle with its path', () => {
    const graph = buildGraph([t('a', ['c']), t('b', ['a']), t('c', ['b'])]);
    expect(graph.ok).toBe(false);
    if (!graph.ok && graph.error.reason === 'cycle') expect(graph.error.path).toEqual(['a', 'b', 'c', 'a']);
    else throw new Error('expected a cycle');
  });
  it('reports an unknown dependency and duplicate ids', () => {
    expect(buildGraph([t('a', ['ghost'])])).toMatchObject({ ok: false, error: { reason: 'unknown-dependency', id: 'a', dependency: 'ghost' } });
    expect(buildGraph([t('a'), t('a')])).toMatchObject({ ok: false, error: { reason: 'duplicate-task' } });
  });
  it('refuses a key on the content of a task that is not a dependency, or of an artifact without a content hash', () => {
    const producer: Task = { ...t('a'), artifacts: [{ name: 'esp', kind: 'folder' }, { name: 'disk.raw', kind: 'disk' }] };
    const keyed = (deps: string[], names: string[]): Task => ({ ...t('b', deps), keyedOnContent: { a: names } });
    expect(buildGraph([producer, keyed(['a'], ['esp'])]).ok).toBe(true);
    expect(buildGraph([producer, keyed([], ['esp'])])).toMatchObject({ ok: false, error: { reason: 'content-key-invalid', id: 'b', dependency: 'a' } });
    expect(buildGraph([producer, keyed(['a'], ['disk.raw'])])).toMatchObject({ ok: false, error: { reason: 'content-key-invalid', artifact: 'disk.raw' } });
    expect(buildGraph([producer, keyed(['a'], ['nothing'])])).toMatchObject({ ok: false, error: { reason: 'content-key-invalid', artifact: 'nothing' } });
    // inside one transaction the producer publishes only when it ends
    const mount: GraphNode = { kind: 'resource', id: 'm', stage: 'm', title: 'm', deps: [], inputs: {}, version: 1, acquire: async () => undefined, release: async () => undefined } as unknown as GraphNode;
    const inTransaction = (id: string, deps: string[]): Task => ({ ...producer, id, deps });
    expect(buildGraph([mount, inTransaction('a', ['m']), { ...keyed(['a', 'm'], ['esp']) }])).toMatchObject({ ok: false, error: { reason: 'content-key-invalid', resource: 'm' } });
  });

  it('refuses keying dependents on values a task does not have, or on none', () => {
    const valued = (names: string[]): Task => ({ ...t('a'), artifacts: [{ name: 'toplevel', kind: 'value' }, { name: 'esp', kind: 'folder' }], keyedByValues: names });
    expect(buildGraph([valued(['toplevel'])]).ok).toBe(true);
    expect(buildGraph([valued(['esp'])])).toMatchObject({ ok: false, error: { reason: 'keyed-values-invalid', value: 'esp' } });
    expect(buildGraph([valued([])])).toMatchObject({ ok: false, error: { reason: 'keyed-values-invalid', value: '(none named)' } });
  });
  it("refuses an export of another task's artifact unless that task is a dependency", () => {
    const exporting = (deps: string[]): Task => ({ ...t('b', deps), exports: [{ from: 'a', artifact: 'disk.raw', to: '/out/disk.raw' }] });
    expect(buildGraph([t('a'), exporting([])])).toMatchObject({ ok: false, error: { reason: 'export-not-from-dependency', id: 'b', from: 'a' } });
    expect(buildGraph([t('a'), exporting(['a'])]).ok).toBe(true);
  });
  it('resolves stage names to all their tasks and takes the closure', () => {
    const graph = buildGraph([t('x:boot', [], 'x'), t('x:root', [], 'x'), t('y', ['x:root'])]);
    if (!graph.ok) throw new Error('graph');
    const ids = resolveTargets(graph.value, ['x']);
    expect(ids.ok && ids.value).toEqual(['x:boot', 'x:root']);
    expect(closure(graph.value, ['y'])).toEqual(['x:root', 'y']);
    expect(resolveTargets(graph.value, ['nope']).ok).toBe(false);
  });
  it('takes a name that is a task id and its own stage for the whole stage (install beside install:esp)', () => {
    const graph = buildGraph([t('install'), t('install:esp', ['install'], 'install'), t('x:root', [], 'x'), t('x', [], 'other')]);
    if (!graph.ok) throw new Error('graph');
    const stage = resolveTargets(graph.value, ['install']);
    expect(stage.ok && stage.value).toEqual(['install', 'install:esp']);
    const task = resolveTargets(graph.value, ['install:esp']);
    expect(task.ok && task.value).toEqual(['install:esp']);
    // a task id that is another stage's name too means the task: the id is the more exact name
    const id = resolveTargets(graph.value, ['x']);
    expect(id.ok && id.value).toEqual(['x']);
  });
  it('runs a named resource as the tasks that hold it', () => {
    const mount = { id: 'mount', stage: 'mount', title: 'mount', deps: ['pool'], inputs: {}, version: 1, kind: 'resource' as const, acquire: async () => undefined, release: async () => undefined };
    const graph = buildGraph([t('pool'), mount, t('install', ['mount']), t('export', ['install', 'mount']), t('convert', ['export'])]);
    if (!graph.ok) throw new Error('graph');
    const ids = resolveTargets(graph.value, ['mount']);
    expect(ids.ok && ids.value).toEqual(['mount']); // logs and explain show the resource itself
    expect(runnableTargets(graph.value, ['mount', 'convert'])).toEqual(['install', 'export', 'convert']);
  });
});

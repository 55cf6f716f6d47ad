import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { openCache } from '../../lib/caching/cache-store.ts';
import { buildGraph } from '../../lib/engine/graph.ts';
import type { GraphNode, Task } from '../../lib/engine/task.ts';
import type { Reporter, RunEvent } from '../../lib/logging/events.ts';
import { schedule } from '../../lib/execution/scheduler.ts';

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'scheduler-'));
});
afterEach(() => rm(dir, { recursive: true, force: true }));

const task = (id: string, deps: string[], run: Task['run']): Task => ({
  id,
  stage: id,
  title: id,
  deps,
  inputs: {},
  version: 1,
  artifacts: [{ name: 'out', kind: 'value' }],
  run,
});

describe('scheduler', () => {
  it('runs the run-end cleanups even when the engine itself fails mid-run, then reports that failure', async () => {
    const cleaned: string[] = [];
    const graph = buildGraph([
      // registers a run-wide cleanup, as a build that started a daemon does
      task('starts-daemon', [], async (ctx) => {
        ctx.atRunEnd('daemon', () => void cleaned.push('daemon stopped'));
        return { out: 1 };
      }),
      task('after', ['starts-daemon'], async () => ({ out: 2 })),
    ]);
    if (!graph.ok) throw new Error('bad graph');
    // a reporter that breaks on one event: an error outside any task, which no task failure catches
    const reporter: Reporter = {
      begin: () => undefined,
      event: (event: RunEvent) => {
        if (event.type === 'task' && event.id === 'after' && event.status === 'started') throw new Error('reporter broke');
      },
      end: () => undefined,
    };
    await expect(
      schedule({ graph: graph.value, ids: ['starts-daemon', 'after'], store: openCache(path.join(dir, 'cache')), reporter, concurrency: 2, signal: new AbortController().signal }),
    ).rejects.toThrow('reporter broke');
    expect(cleaned).toEqual(['daemon stopped']);
  });

  it('a signal during the run-end cleanups, once every task ran or came from the cache, leaves the build complete (the unneeded resource too)', async () => {
    const store = openCache(path.join(dir, 'cache'));
    const controller = new AbortController();
    const held: string[] = [];
    const mount: GraphNode = {
      kind: 'resource', id: 'mount', stage: 'mount', title: 'mount', deps: [], inputs: {}, version: 1,
      acquire: async () => void held.push('acquired'),
      release: async () => void held.push('released'),
    };
    const nodes = (first: boolean): GraphNode[] => [
      task('starts-daemon', [], async (ctx) => {
        // the Ctrl-C comes while the daemon is being stopped, after the last task
        ctx.atRunEnd('daemon', () => void (first || controller.abort()));
        return { out: 1 };
      }),
      mount,
      task('install', ['mount'], async () => ({ out: 2 })),
    ];
    const run = async (first: boolean) => {
      const graph = buildGraph(nodes(first));
      if (!graph.ok) throw new Error('bad graph');
      const events: RunEvent[] = [];
      const reporter: Reporter = { begin: () => undefined, event: (event) => void events.push(event), end: () => undefined };
      const signal = first ? new AbortController().signal : controller.signal;
      return { summary: await schedule({ graph: graph.value, ids: ['starts-daemon', 'mount', 'install'], store, reporter, concurrency: 2, signal, force: first ? undefined : new Set(['starts-daemon']) }), events };
    };
    expect((await run(true)).summary.ok).toBe(true);
    // starts-daemon reruns, install is cached, so the mount is skipped as not needed
    const { summary, events } = await run(false);
    expect(summary.tasks.map((t) => `${t.id} ${t.status}`).sort()).toEqual(['install cached', 'mount skipped', 'starts-daemon ran']);
    expect(summary).toMatchObject({ ok: true, interrupted: false });
    expect(events).toContainEqual(expect.objectContaining({ type: 'notice', message: 'the signal came after every task had finished: the build is complete' }));
    expect(held).toEqual(['acquired', 'released']);
  });
});

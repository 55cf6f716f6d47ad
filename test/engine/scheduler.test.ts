import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
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
  it('explains a miss against the entry the previous build used, not the last one published', async () => {
    const store = openCache(path.join(dir, 'cache'));
    const build = async (inputs: { x: number; y: number }): Promise<{ status: string; reason: string }> => {
      const graph = buildGraph([{ ...task('t', [], async () => ({ out: 1 })), inputs }]);
      if (!graph.ok) throw new Error('bad graph');
      let seen = { status: '', reason: '' };
      const reporter: Reporter = {
        begin: () => undefined,
        event: (event: RunEvent) => {
          if (event.type === 'task' && event.status !== 'started') seen = { status: event.status, reason: event.reason ?? '' };
        },
        end: () => undefined,
      };
      await schedule({ graph: graph.value, ids: ['t'], store, reporter, concurrency: 1, signal: new AbortController().signal });
      return seen;
    };
    await build({ x: 1, y: 1 });
    expect(await build({ x: 2, y: 1 })).toEqual({ status: 'ran', reason: 'changed: inputs.x' });
    expect((await build({ x: 1, y: 1 })).status).toBe('cached');
    // only y differs from what the last build used (x=1), though the last entry published had x=2
    expect(await build({ x: 1, y: 2 })).toEqual({ status: 'ran', reason: 'changed: inputs.y' });
  });

  it('keeps a task keyed on a dependency\'s content fresh when the dependency reruns and publishes the same content', async () => {
    const store = openCache(path.join(dir, 'cache'));
    const runs: string[] = [];
    const build = async (version: number, content: string): Promise<Record<string, string>> => {
      const producer: Task = {
        ...task('producer', [], async (ctx) => {
          runs.push('producer');
          await mkdir(path.join(ctx.staging, 'tree'));
          await writeFile(path.join(ctx.staging, 'tree/file'), content);
        }),
        version, // a new version: the producer reruns
        artifacts: [{ name: 'tree', kind: 'folder' }],
      };
      const reader: Task = { ...task('reader', ['producer'], async () => void runs.push('reader')), artifacts: [], keyedOnContent: { producer: ['tree'] } };
      const graph = buildGraph([producer, reader]);
      if (!graph.ok) throw new Error('bad graph');
      const statuses: Record<string, string> = {};
      const reporter: Reporter = {
        begin: () => undefined,
        event: (event: RunEvent) => {
          if (event.type === 'task' && event.status !== 'started') statuses[event.id] = event.status;
        },
        end: () => undefined,
      };
      await schedule({ graph: graph.value, ids: ['producer', 'reader'], store, reporter, concurrency: 2, signal: new AbortController().signal });
      return statuses;
    };
    expect(await build(1, 'same')).toEqual({ producer: 'ran', reader: 'ran' });
    expect(await build(2, 'same')).toEqual({ producer: 'ran', reader: 'cached' });
    expect(await build(3, 'other')).toEqual({ producer: 'ran', reader: 'ran' });
    expect(await build(3, 'other')).toEqual({ producer: 'cached', reader: 'cached' });
    expect(runs).toEqual(['producer', 'reader', 'producer', 'producer', 'reader']);
  });

  it('runs the run-end cleanups even when the engine itself fails mid-run, and reports that failure as the task\'s', async () => {
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
    const summary = await schedule({ graph: graph.value, ids: ['starts-daemon', 'after'], store: openCache(path.join(dir, 'cache')), reporter, concurrency: 2, signal: new AbortController().signal });
    expect(summary.ok).toBe(false);
    expect(summary.tasks.map((t) => `${t.id} ${t.status} ${t.reason}`)).toEqual(['starts-daemon ran never built', 'after failed reporter broke']);
    expect(cleaned).toEqual(['daemon stopped']);
  });

  it('run-end cleanups run last registered first; one that throws becomes a warning, the next still runs, and the build stays ok', async () => {
    const order: string[] = [];
    const graph = buildGraph([
      task('first', [], async (ctx) => {
        ctx.atRunEnd('zfs:zfs-fuse', () => {
          order.push('zfs');
        });
        ctx.atRunEnd('zfs:zfs-fuse', () => {
          order.push('registered twice'); // the first registration of a key wins
        });
        return { out: 1 };
      }),
      task('second', ['first'], async (ctx) => {
        ctx.atRunEnd('broken', () => {
          order.push('broken');
          throw new Error('boom');
        });
        return { out: 2 };
      }),
    ]);
    if (!graph.ok) throw new Error('bad graph');
    const notices: string[] = [];
    const reporter: Reporter = {
      begin: () => undefined,
      event: (event: RunEvent) => {
        if (event.type === 'notice') notices.push(`${event.level} ${event.message}`);
      },
      end: () => undefined,
    };
    const summary = await schedule({ graph: graph.value, ids: ['first', 'second'], store: openCache(path.join(dir, 'cache')), reporter, concurrency: 1, signal: new AbortController().signal });
    expect(summary.ok).toBe(true);
    expect(order).toEqual(['broken', 'zfs']);
    expect(notices).toEqual(['warn run cleanup "broken" failed: boom']);
  });

  it('a task\'s cleanups run last registered first, before it is published, after a failure too', async () => {
    const order: string[] = [];
    const graph = buildGraph([
      task('ok', [], async (ctx) => {
        ctx.cleanup(() => void order.push('ok: first registered'));
        ctx.cleanup(() => void order.push('ok: second registered'));
        return { out: 1 };
      }),
      task('fails', ['ok'], async (ctx) => {
        ctx.cleanup(() => void order.push('fails: cleanup'));
        throw new Error('broke');
      }),
    ]);
    if (!graph.ok) throw new Error('bad graph');
    const published: string[] = [];
    const reporter: Reporter = {
      begin: () => undefined,
      event: (event: RunEvent) => {
        if (event.type === 'task' && event.status !== 'started') published.push(`${event.id} ${event.status} after ${order.length} cleanups`);
      },
      end: () => undefined,
    };
    const summary = await schedule({ graph: graph.value, ids: ['ok', 'fails'], store: openCache(path.join(dir, 'cache')), reporter, concurrency: 1, signal: new AbortController().signal });
    expect(summary.ok).toBe(false);
    expect(order).toEqual(['ok: second registered', 'ok: first registered', 'fails: cleanup']);
    expect(published).toEqual(['ok ran after 2 cleanups', 'fails failed after 3 cleanups']);
  });

  it('an engine error inside a transaction fails one member and skips the others, which never started', async () => {
    const store = openCache(path.join(dir, 'cache'));
    let broken = false;
    const mount: GraphNode = {
      kind: 'resource', id: 'mount', stage: 'mount', title: 'mount', deps: [], inputs: {}, version: 1,
      acquire: async () => undefined,
      release: async () => undefined,
    };
    // the second user's cache check throws once its entry exists: an error of the engine's own
    const checked: Task = {
      ...task('export', ['mount', 'install'], async () => ({ out: 2 })),
      checkCached: async () => {
        if (broken) throw new Error('check broke');
        return undefined;
      },
    };
    const graph = buildGraph([mount, task('install', ['mount'], async () => ({ out: 1 })), checked]);
    if (!graph.ok) throw new Error('bad graph');
    const run = () =>
      schedule({ graph: graph.value, ids: ['mount', 'install', 'export'], store, reporter: { begin: () => undefined, event: () => undefined, end: () => undefined }, concurrency: 2, signal: new AbortController().signal });
    expect((await run()).ok).toBe(true);
    broken = true;
    const summary = await run();
    expect(summary.tasks.filter((t) => t.status === 'failed').map((t) => t.reason)).toEqual(['check broke']);
    expect(summary.tasks.filter((t) => t.status === 'skipped')).toHaveLength(2);
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

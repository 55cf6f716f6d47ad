import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { openCache } from '../../lib/caching/cache-store.ts';
import { buildGraph } from '../../lib/engine/graph.ts';
import type { Task } from '../../lib/engine/task.ts';
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
});

import { execa } from 'execa';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import type { TaskContext } from '../../lib/engine/task.ts';
import { createExec } from '../../lib/execution/exec.ts';
import { formatBytes } from '../../lib/logging/format.ts';
import { batchStorePaths, copyClosure } from '../../tasks/image/stages/copy-closure.ts';
import { demoSystem } from '../helpers/reliability.ts';

const paths = (n: number): string[] => Array.from({ length: n }, (_, i) => `/nix/store/${String(i).padStart(32, 'a')}-p${i}`);

describe('batchStorePaths', () => {
  it('copies a closure of thousands of small paths in a few cp calls, in order', () => {
    const closure = paths(1000);
    const batches = batchStorePaths(closure, closure.map(() => 4096), { paths: 200, bytes: 64 * 2 ** 20 });
    expect(batches.map((b) => b.paths.length)).toEqual([200, 200, 200, 200, 200]);
    expect(batches.flatMap((b) => b.paths)).toEqual(closure);
    expect(batches.reduce((sum, b) => sum + b.bytes, 0)).toBe(1000 * 4096);
  });

  it('closes a batch before it passes the byte limit, and gives a big path a batch of its own', () => {
    const closure = paths(4);
    const batches = batchStorePaths(closure, [30, 30, 500, 10], { paths: 10, bytes: 100 });
    expect(batches.map((b) => [b.paths.length, b.bytes])).toEqual([[2, 60], [1, 500], [1, 10]]);
  });

  it('makes no batch for an empty closure', () => {
    expect(batchStorePaths([], [])).toEqual([]);
  });
});

describe('copyClosure', () => {
  it('copies a real closure batch by batch, reporting paths and bytes done after each, and skips what is there', async () => {
    const toplevel = await demoSystem();
    const closure = (await execa('nix-store', ['-qR', toplevel])).stdout.split('\n').sort();
    const sizes = await Promise.all(closure.map(async (p) => Number((await execa('nix-store', ['-q', '--size', p])).stdout)));
    const total = sizes.reduce((a, b) => a + b, 0);
    const root = await mkdtemp(path.join(tmpdir(), 'copy-closure-'));
    const progress: { fraction: number; detail: string | undefined }[] = [];
    const logged: string[] = [];
    // the copying is real (cp -a of real store paths); the context only collects what the task reports
    const ctx = {
      exec: createExec(),
      log: (line: string) => logged.push(line),
      progress: (fraction: number, detail?: string) => progress.push({ fraction, detail }),
    } as unknown as TaskContext<any>;
    try {
      await copyClosure(ctx, root, closure, sizes, 'off', { paths: 1, bytes: 2 ** 30 });
      expect(closure.length).toBeGreaterThan(1);
      expect(progress.map((p) => p.detail)).toEqual(closure.map((_, i) => expect.stringMatching(new RegExp(`^${i + 1}/${closure.length} paths, .+ of ${formatBytes(total).replace('.', '\\.')}$`))));
      const fractions = progress.map((p) => p.fraction);
      expect(fractions).toEqual([...fractions].sort((a, b) => a - b));
      expect(fractions.at(-1)).toBe(1);
      for (const storePath of closure) await stat(path.join(root, storePath));
      expect(logged.at(-1)).toBe(`copied ${closure.length} store paths (${formatBytes(total)})`);
      // a rerun into the same root copies nothing
      progress.length = 0;
      await copyClosure(ctx, root, closure, sizes, 'off', { paths: 1, bytes: 2 ** 30 });
      expect(progress).toEqual([]);
      expect(logged).toContain(`copying 0 store paths (0 B); ${closure.length} already present`);
    } finally {
      await execa('chmod', ['-R', 'u+w', root]);
      await rm(root, { recursive: true, force: true });
    }
  });
});

import { describe, expect, it } from 'vitest';
import { batchStorePaths } from '../../tasks/image/stages/copy-closure.ts';

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

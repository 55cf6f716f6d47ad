import { mkdir, stat } from 'node:fs/promises';
import path from 'node:path';
import type { TaskContext } from '../../../lib/engine/task.ts';
import { formatBytes } from '../../../lib/logging/format.ts';
import { writeWithinFreeSpace } from '../../../lib/caching/free-space.ts';

/** Limits of one `cp` call: few processes for a closure of thousands of paths, progress still every 64 MiB. */
const BATCH_LIMITS = { paths: 200, bytes: 64 * 2 ** 20 } as const;

/** Store paths copied by one `cp -a` call. */
export interface CopyBatch {
  readonly paths: readonly string[];
  readonly bytes: number;
}

/**
 * Splits store paths (with their NAR sizes) into batches, in order: a batch closes once it holds
 * `limits.paths` paths or `limits.bytes` bytes; a path bigger than the byte limit goes alone.
 */
export function batchStorePaths(paths: readonly string[], sizes: readonly number[], limits: { paths: number; bytes: number } = BATCH_LIMITS): CopyBatch[] {
  const batches: CopyBatch[] = [];
  let current: string[] = [];
  let bytes = 0;
  paths.forEach((storePath, index) => {
    const size = sizes[index] ?? 0;
    if (current.length > 0 && (current.length >= limits.paths || bytes + size > limits.bytes)) {
      batches.push({ paths: current, bytes });
      current = [];
      bytes = 0;
    }
    current.push(storePath);
    bytes += size;
  });
  if (current.length > 0) batches.push({ paths: current, bytes });
  return batches;
}

/**
 * Copies store paths into `<root>/nix/store` with `cp -a`, in batches so progress can say how
 * many paths and bytes of the total are done without one process per path. Paths already
 * present are skipped.
 */
export async function copyClosure(
  ctx: TaskContext<any>,
  root: string,
  closure: readonly string[],
  sizes: readonly number[],
  compression = 'off',
  limits: { paths: number; bytes: number } = BATCH_LIMITS,
): Promise<void> {
  const store = path.join(root, 'nix/store');
  await mkdir(store, { recursive: true });
  const totalBytes = sizes.reduce((sum, n) => sum + n, 0);
  // NAR sizes are close to what the files take; compression on the dataset (`compression`) only helps
  await writeWithinFreeSpace(store, totalBytes, `the closure (${closure.length} store paths)`, compression, (line) => ctx.log(line), () =>
    copyMissing(ctx, store, closure, sizes, totalBytes, limits),
  );
}

async function copyMissing(
  ctx: TaskContext<any>,
  store: string,
  closure: readonly string[],
  sizes: readonly number[],
  totalBytes: number,
  limits: { paths: number; bytes: number },
): Promise<void> {
  const missing: string[] = [];
  const missingSizes: number[] = [];
  let bytes = 0;
  let done = 0;
  for (const [index, storePath] of closure.entries()) {
    if (await stat(path.join(store, path.basename(storePath))).then(() => true, () => false)) {
      bytes += sizes[index] ?? 0;
      done += 1;
    } else {
      missing.push(storePath);
      missingSizes.push(sizes[index] ?? 0);
    }
  }
  ctx.log(`copying ${missing.length} store paths (${formatBytes(totalBytes - bytes)}); ${done} already present`);
  for (const batch of batchStorePaths(missing, missingSizes, limits)) {
    await ctx.exec('cp', ['-a', '--', ...batch.paths, store], { quiet: true });
    bytes += batch.bytes;
    done += batch.paths.length;
    ctx.progress(totalBytes > 0 ? bytes / totalBytes : done / closure.length, `${done}/${closure.length} paths, ${formatBytes(bytes)} of ${formatBytes(totalBytes)}`);
  }
  ctx.log(`copied ${done} store paths (${formatBytes(bytes)})`);
}

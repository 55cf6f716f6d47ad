import { mkdir, stat } from 'node:fs/promises';
import path from 'node:path';
import type { TaskContext } from '../../../lib/engine/task.ts';
import { formatBytes } from '../../../lib/logging/format.ts';
import { ensureFreeSpace } from '../../../lib/caching/free-space.ts';

/**
 * Copies store paths into `<root>/nix/store` with `cp -a`, one path at a time so progress can
 * say how many paths and bytes of the total are done. Paths already present are skipped.
 */
export async function copyClosure(ctx: TaskContext<any>, root: string, closure: readonly string[], sizes: readonly number[]): Promise<void> {
  const store = path.join(root, 'nix/store');
  await mkdir(store, { recursive: true });
  const totalBytes = sizes.reduce((sum, n) => sum + n, 0);
  // NAR sizes are close to what the files take; compression on the dataset only helps.
  await ensureFreeSpace(store, totalBytes, `the closure (${closure.length} store paths)`);
  let bytes = 0;
  let done = 0;
  ctx.log(`copying ${closure.length} store paths (${formatBytes(totalBytes)})`);
  for (const storePath of closure) {
    const target = path.join(store, path.basename(storePath));
    const present = await stat(target).then(() => true, () => false);
    if (!present) await ctx.exec('cp', ['-a', '--', storePath, store], { quiet: true });
    bytes += sizes[done] ?? 0;
    done += 1;
    ctx.progress(totalBytes > 0 ? bytes / totalBytes : done / closure.length, `${done}/${closure.length} paths, ${formatBytes(bytes)} of ${formatBytes(totalBytes)}`);
  }
  ctx.log(`copied ${done} store paths (${formatBytes(bytes)})`);
}

import { rename } from 'node:fs/promises';
import path from 'node:path';
import type { Task } from '../../../lib/engine/task.ts';
import { diskFile } from './create-disks.ts';
import type { MountedImage } from './mount.ts';

/** `export-pool`: unmounts longest path first, exports the pool, and publishes the quiesced root disk. */
export function exportPoolTask(): Task {
  return {
    id: 'export-pool',
    stage: 'export-pool',
    title: 'unmount, export the pool and publish the root disk',
    deps: ['install', 'mount'],
    inputs: {},
    version: 1,
    artifacts: [{ name: diskFile('root'), kind: 'disk' }],
    async run(ctx) {
      const image = ctx.resources['mount'] as MountedImage;
      await ctx.release('mount');
      // Same file system (both in the cache folder): a rename, no copy of the disk's bytes.
      await rename(image.disk, path.join(ctx.staging, diskFile('root')));
    },
  };
}

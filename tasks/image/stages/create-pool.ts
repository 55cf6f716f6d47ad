import path from 'node:path';
import type { Json, Task } from '../../../lib/engine/task.ts';
import type { ImageConfig } from '../config.ts';
import { datasetCreationOrder } from '../generators.ts';
import { diskFile } from './create-disks.ts';
import { ensureZfs } from './zfs-session.ts';
import type { PoolLayout } from './pool-layout.ts';
import { propertiesSet } from '../zfs/driver.ts';

/** `create-pool`: the pool on the whole root disk, then the datasets, parents first; published exported. */
export function createPoolTask(config: ImageConfig, layout: PoolLayout): Task {
  return {
    id: 'create-pool',
    stage: 'create-pool',
    title: `create pool ${config.rootPoolName} and ${Object.keys(config.datasets).length} dataset(s)`,
    deps: ['create-disks:root'],
    // what the driver sets, not the warnings about what it dropped: asking for exactly the properties
    // zfs-fuse sets makes the same pool (only image-info.json's droppedByDriver changes, in post-vm)
    inputs: {
      driver: layout.driver,
      pool: config.rootPoolName,
      properties: propertiesSet(layout.properties) as unknown as Json,
    },
    version: 1,
    tools: layout.tools,
    artifacts: [{ name: diskFile('root'), kind: 'disk' }],
    async run(ctx) {
      const disk = path.join(ctx.staging, diskFile('root'));
      await ctx.copyDisk(ctx.deps['create-disks:root']!.paths[diskFile('root')]!, disk);
      const driver = layout.makeDriver(ctx.exec);
      for (const warning of layout.properties.warnings) ctx.warn(warning);
      await ensureZfs(ctx, driver);
      const handle = await driver.createPool({
        pool: config.rootPoolName,
        vdev: disk,
        poolProperties: layout.properties.pool,
        filesystemProperties: layout.properties.filesystem,
      });
      let exported = false;
      // Whatever happens next, the pool must not stay imported (and the disk is never published imported).
      ctx.cleanup(async () => {
        if (!exported) await driver.exportPool(handle, { force: true });
      });
      for (const dataset of datasetCreationOrder(config.datasets)) {
        await driver.createDataset(handle, dataset.name, layout.properties.datasets[dataset.name] ?? {});
      }
      await driver.exportPool(handle);
      exported = true;
    },
  };
}

import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import type { ResourceTask } from '../../../lib/engine/task.ts';
import type { ImageConfig } from '../config.ts';
import type { MountState, PoolHandle, ZfsDriver } from '../zfs/driver.ts';
import { mountOrder } from '../generators.ts';
import { diskFile } from './create-disks.ts';
import type { PoolLayout } from './pool-layout.ts';
import { ensureZfs, killHungZfsFuse } from './zfs-session.ts';

/** What `mount` hands install and export-pool. */
export interface MountedImage {
  /** Host folder where the image's / is mounted. */
  readonly root: string;
  /** The working copy of create-pool's disk that the pool is imported from. */
  readonly disk: string;
  readonly pool: PoolHandle;
  readonly state: MountState;
  readonly driver: ZfsDriver;
  /** Set once the pool is exported, so the safety cleanup knows there is nothing left to do. */
  readonly released: { done: boolean };
  /** Stops asking the ZFS service whether it still answers. */
  readonly stopWatching: () => void;
}

/**
 * The ZFS daemon stopped answering while the datasets are mounted: say so, and kill it if this
 * build started it, so that install's waiting file operations fail and the build ends.
 */
async function onHungDaemon(ctx: Parameters<ResourceTask<any, MountedImage>['acquire']>[0], error: Error): Promise<void> {
  ctx.warn(error.message);
  if (await killHungZfsFuse(ctx.exec)) {
    ctx.warn('killed the hung zfs-fuse daemon this build started and detached its mounts: the running stage fails now');
  } else {
    ctx.warn('another build or you started this zfs-fuse daemon, so it is left running and this build waits on it; recover as above');
  }
}

/**
 * `mount`: a working copy of create-pool's checkpoint, the pool imported from it and the
 * datasets mounted under a temporary root, shortest path first. Held while install runs;
 * released (unmounted longest first, exported) by export-pool, or on failure and Ctrl-C.
 */
export function mountResource(config: ImageConfig, layout: PoolLayout): ResourceTask<any, MountedImage> {
  return {
    kind: 'resource',
    id: 'mount',
    stage: 'mount',
    title: 'import the pool and mount the datasets',
    deps: ['create-pool'],
    inputs: { driver: layout.driver },
    version: 1,
    async acquire(ctx) {
      const disk = path.join(ctx.scratch, diskFile('root'));
      const root = path.join(ctx.scratch, 'root');
      await mkdir(root);
      ctx.log(`copying create-pool's checkpoint to ${disk}`);
      await ctx.copyDisk(ctx.deps['create-pool']!.paths[diskFile('root')]!, disk);
      const driver = layout.makeDriver(ctx.exec);
      await ensureZfs(ctx, driver);
      const pool = await driver.importPool({ pool: config.rootPoolName, vdev: disk, root });
      const released = { done: false };
      let state: MountState = { mounted: [], restore: [] };
      // Runs on a failed acquire, and after release (cleanups are shared with it): forces what release did not do.
      ctx.cleanup(async () => {
        if (released.done) return;
        await driver.unmountAll(pool, state, { force: true }).catch((error: Error) => ctx.log(`forced unmount: ${error.message}`));
        await driver.exportPool(pool, { force: true });
      });
      const mounts = mountOrder(config.datasets).map((m) => ({ dataset: m.name, mount: m.mount }));
      state = await driver.mountDatasets(pool, mounts);
      // install's file operations in the mounted datasets have no time limit of their own
      const stopWatching =
        driver.watch?.((error) => {
          onHungDaemon(ctx, error).catch((failure: Error) => ctx.log(`could not deal with the hung daemon: ${failure.message}`));
        }) ?? (() => undefined);
      ctx.cleanup(stopWatching);
      return { root, disk, pool, state, driver, released, stopWatching };
    },
    async release(ctx, image) {
      image.stopWatching();
      ctx.log(`unmounting and exporting ${image.pool.name}`);
      await image.driver.unmountAll(image.pool, image.state);
      await image.driver.exportPool(image.pool);
      image.released.done = true;
    },
  };
}

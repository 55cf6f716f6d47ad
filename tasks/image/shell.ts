import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { copyDisk } from '../../lib/caching/disk-copy.ts';
import type { ShellProvider } from '../../lib/engine/shell.ts';
import type { ImageConfig } from './config.ts';
import { mountOrder } from './generators.ts';
import { MTOOLS_ENV, mtoolsImage } from './boot-disk.ts';
import { diskFile } from './stages/create-disks.ts';
import type { PoolLayout } from './stages/pool-layout.ts';
import type { MountState } from './zfs/driver.ts';
import { useZfs } from './stages/zfs-session.ts';

/** Which published root and boot disks hold a stage's state: the latest checkpoint at or before it. */
function checkpointsFor(available: readonly string[]): { root?: string; boot?: string } {
  const root = ['export-pool', 'create-pool'].find((id) => available.includes(id));
  const boot = ['install:esp', 'partition'].find((id) => available.includes(id));
  return { ...(root ? { root } : {}), ...(boot ? { boot } : {}) };
}

/**
 * `shell <stage>` for the image: a working copy of the stage's root disk with the pool imported
 * and the datasets mounted under `<work>/root`, and the ESP's files copied out to `<work>/esp`.
 * Nothing is written back: the copies are discarded on exit, the cache is untouched.
 */
export function imageShell(config: ImageConfig, layout: PoolLayout): ShellProvider {
  return async ({ stage, outputs, workDir, exec, log }) => {
    const notes: string[] = [];
    const undo: (() => Promise<void>)[] = [];
    const release = async (): Promise<void> => {
      for (const step of undo.reverse()) await step().catch((error: Error) => log(`cleanup: ${error.message}`));
    };
    try {
      const { root: rootTask, boot: bootTask } = checkpointsFor(Object.keys(outputs));
      const env: Record<string, string> = { ...(process.env as Record<string, string>) };
      // a shell opened inside another one must not see the outer copy's paths as its own
      for (const name of ['IMAGE_ROOT', 'IMAGE_POOL', 'IMAGE_ESP']) delete env[name];
      let cwd = workDir;
      if (rootTask) {
        const disk = path.join(workDir, diskFile('root'));
        const root = path.join(workDir, 'root');
        await mkdir(root);
        // copied first: a disk that does not fit fails before a daemon is started for it
        log(`copying ${rootTask}'s root disk`);
        await copyDisk(outputs[rootTask]!.paths[diskFile('root')]!, disk);
        const driver = layout.makeDriver(exec);
        const use = await useZfs(driver, exec, log);
        undo.push(() => use.release((level, line) => log(level === 'warn' ? `warning: ${line}` : line)));
        const pool = await driver.importPool({ pool: config.rootPoolName, vdev: disk, root });
        const mounts = mountOrder(config.datasets).map((m) => ({ dataset: m.name, mount: m.mount }));
        let state: MountState = { mounted: [], restore: [] };
        undo.push(async () => {
          await driver.unmountAll(pool, state);
          await driver.exportPool(pool);
        });
        state = await driver.mountDatasets(pool, mounts);
        cwd = root;
        env['IMAGE_ROOT'] = root;
        env['IMAGE_POOL'] = pool.name;
        notes.push(`${rootTask}: pool ${pool.name} imported from a copy, datasets mounted at ${root} ($IMAGE_ROOT)`);
      }
      const esp = path.join(workDir, 'esp');
      const offset = outputs['partition']?.values['espOffset'];
      if (bootTask && typeof offset === 'number') {
        await mkdir(esp);
        const image = mtoolsImage(outputs[bootTask]!.paths[diskFile('boot')]!, offset);
        const listing = await exec('mdir', ['-b', '-i', image, '::/'], { env: MTOOLS_ENV, quiet: true });
        if (listing.stdout.trim() !== '') await exec('mcopy', ['-s', '-n', '-i', image, '::/*', esp], { env: MTOOLS_ENV, quiet: true });
        notes.push(`${bootTask}: the ESP's files copied to ${esp} ($IMAGE_ESP); changes there are not written back`);
        env['IMAGE_ESP'] = esp;
      } else if (outputs['install']?.paths['esp']) {
        // install's /boot, before install:esp writes it into the FAT
        await exec('cp', ['-a', outputs['install'].paths['esp'], esp]);
        notes.push(`install: the ESP's files (as install left them) copied to ${esp} ($IMAGE_ESP)`);
        env['IMAGE_ESP'] = esp;
      }
      if (cwd === workDir && env['IMAGE_ESP'] === undefined) {
        throw new Error(`${stage} holds no disk to open: shell opens the pool from create-pool on and the ESP from partition on`);
      }
      notes.push('when it ends, the copies are unmounted, exported and discarded; the cache is not changed');
      return { cwd, env, notes, release };
    } catch (error) {
      await release();
      throw error;
    }
  };
}

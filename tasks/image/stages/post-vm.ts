import { stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { exportArtifacts } from '../../../lib/caching/export-artifact.ts';
import type { PoolLayout } from './pool-layout.ts';
import { propertiesSet } from '../zfs/driver.ts';
import type { Json, Task } from '../../../lib/engine/task.ts';
import type { ImageConfig } from '../config.ts';
import { outputFileNames } from '../generators.ts';

/** `post-vm`: writes `<out>/image-info.json`, then runs the config's postVM shell code in bash. */
export function postVmTask(config: ImageConfig, outDir: string, layout: PoolLayout): Task {
  const names = outputFileNames(config.format);
  // one set, image-info.json last: a build stopped before the set is placed leaves the previous set
  // whole; postVM runs after it is placed, so a failing hook leaves the new set, which matches too
  const outputs = [
    { from: 'convert:boot', artifact: names.boot, to: path.join(outDir, names.boot) },
    { from: 'convert:root', artifact: names.root, to: path.join(outDir, names.root) },
    { artifact: 'image-info.json', to: path.join(outDir, 'image-info.json') },
  ];
  return {
    id: 'post-vm',
    stage: 'post-vm',
    title: config.postVM ? 'describe the images and run postVM' : 'describe the images',
    deps: ['convert:boot', 'convert:root', 'system'],
    inputs: {
      name: config.name,
      format: config.format,
      postVM: config.postVM,
      outDir,
      pool: config.rootPoolName,
      driver: layout.driver,
      // what the driver really set (zfs-fuse drops some defaults), not what was asked for
      properties: propertiesSet(layout.properties) as unknown as Json,
      droppedByDriver: [...layout.properties.warnings],
      datasets: config.datasets as unknown as Json,
    },
    version: 2,
    tools: ['qemu-img', 'bash'],
    artifacts: [{ name: 'image-info.json', kind: 'file' }],
    exports: outputs,
    async run(ctx) {
      // both disks at once: this task is the last on the critical path
      const describeDisk = async (disk: 'boot' | 'root'): Promise<Json> => {
        const file = ctx.deps[`convert:${disk}`]!.paths[names[disk]]!;
        const info = JSON.parse((await ctx.exec('qemu-img', ['info', '--output=json', file], { quiet: true })).stdout) as { 'virtual-size': number };
        const stats = await stat(file);
        return {
          file: names[disk],
          virtualSize: info['virtual-size'],
          fileSize: stats.size,
          allocatedBytes: stats.blocks * 512,
          sha256: ctx.deps[`convert:${disk}`]!.values['sha256']!,
        };
      };
      const [boot, root] = await Promise.all([describeDisk('boot'), describeDisk('root')]);
      const disks: Record<string, Json> = { boot, root };
      const description = {
        name: config.name,
        format: config.format,
        disks,
        system: { toplevel: ctx.deps['system']!.values['toplevel']! },
        pool: {
          name: config.rootPoolName,
          driver: layout.driver,
          properties: layout.properties.pool,
          filesystemProperties: layout.properties.filesystem,
          droppedByDriver: [...layout.properties.warnings],
        },
        datasets: config.datasets as unknown as Json,
      };
      const info = path.join(ctx.staging, 'image-info.json');
      await writeFile(info, `${JSON.stringify(description, null, 2)}\n`);
      if (config.postVM.trim() !== '') {
        // postVM sees the new set in place (publishing keeps the inodes, so the exports after it are no-ops)
        const sources = outputs.map(({ from, artifact, to }) => ({ source: from ? ctx.deps[from]!.paths[artifact]! : info, destination: to }));
        await exportArtifacts(sources, ctx.signal);
        await ctx.exec('bash', ['-e', '-c', config.postVM], {
          // a background job it leaves would hold the build open: stopped, and the log says so
          endGroupOnExit: true,
          cwd: outDir,
          env: {
            out: outDir,
            bootDiskImage: path.join(outDir, names.boot),
            rootDiskImage: path.join(outDir, names.root),
          },
        });
      }
    },
  };
}

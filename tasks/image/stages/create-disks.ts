import path from 'node:path';
import type { Task } from '../../../lib/engine/task.ts';

/** Artifact name of a raw disk in a task's staging folder. */
export const diskFile = (disk: 'boot' | 'root'): string => `${disk}.raw`;

/** `create-disks:<disk>`: an empty sparse raw disk of `sizeMiB`. */
export function createDiskTask(disk: 'boot' | 'root', sizeMiB: number): Task {
  return {
    id: `create-disks:${disk}`,
    stage: 'create-disks',
    title: `create the ${sizeMiB} MiB ${disk} disk`,
    deps: [],
    inputs: { sizeMiB },
    version: 1,
    tools: ['qemu-img'],
    artifacts: [{ name: diskFile(disk), kind: 'disk' }],
    async run(ctx) {
      await ctx.exec('qemu-img', ['create', '-f', 'raw', path.join(ctx.staging, diskFile(disk)), `${sizeMiB}M`]);
    },
  };
}

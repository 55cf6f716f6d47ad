import path from 'node:path';
import type { Task } from '../../../lib/engine/task.ts';
import { findEsp, formatEsp, partitionBootDisk, partitionOffsetBytes, readPartitions } from '../boot-disk.ts';
import { diskFile } from './create-disks.ts';

/** `partition`: GPT with a BIOS boot partition and a FAT32 ESP, on a copy of the empty boot disk. */
export function partitionTask(): Task {
  return {
    id: 'partition',
    stage: 'partition',
    title: 'partition the boot disk and make the ESP',
    deps: ['create-disks:boot'],
    inputs: {},
    version: 1,
    tools: ['parted', 'sfdisk', 'mkfs.vfat'],
    artifacts: [
      { name: diskFile('boot'), kind: 'disk' },
      { name: 'espOffset', kind: 'value' },
    ],
    async run(ctx) {
      const disk = path.join(ctx.staging, diskFile('boot'));
      await ctx.copyDisk(ctx.deps['create-disks:boot']!.paths[diskFile('boot')]!, disk);
      await partitionBootDisk(ctx.exec, disk);
      const esp = findEsp(await readPartitions(ctx.exec, disk));
      await formatEsp(ctx.exec, disk, esp);
      return { espOffset: partitionOffsetBytes(esp) };
    },
  };
}

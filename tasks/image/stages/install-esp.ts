import path from 'node:path';
import type { Task } from '../../../lib/engine/task.ts';
import { writeEspTree } from '../boot-disk.ts';
import { diskFile } from './create-disks.ts';

/** `install:esp`: writes the /boot that install produced into the FAT of a copy of the partitioned boot disk. */
export function installEspTask(): Task {
  return {
    id: 'install:esp',
    stage: 'install',
    title: 'write /boot into the ESP',
    deps: ['partition', 'install'],
    inputs: {},
    version: 1,
    tools: ['mcopy'],
    artifacts: [{ name: diskFile('boot'), kind: 'disk' }],
    async run(ctx) {
      const disk = path.join(ctx.staging, diskFile('boot'));
      const partition = ctx.deps['partition']!;
      await ctx.copyDisk(partition.paths[diskFile('boot')]!, disk);
      await writeEspTree(ctx.exec, disk, partition.values['espOffset'] as number, ctx.deps['install']!.paths['esp']!);
    },
  };
}

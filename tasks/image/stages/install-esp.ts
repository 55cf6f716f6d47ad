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
    // only install's /boot counts: a change to the root disk alone (contents, datasets, rootSize)
    // leaves the boot disk as it is, byte for byte (mcopy would stamp new FAT times)
    keyedOnContent: { install: ['esp'] },
    inputs: {},
    version: 2, // 2: keyed on the content of install's esp, not on install
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

import path from 'node:path';
import type { Task } from '../../../lib/engine/task.ts';
import { allocatedSize, ensureFreeSpace } from '../../../lib/caching/free-space.ts';
import type { ImageFormat } from '../config.ts';
import { outputFileNames, qemuImgConvertArgs } from '../generators.ts';
import { diskFile } from './create-disks.ts';

/** `convert:<disk>`: qemu-img convert of the final raw disk, exported to `<out>/nixos.<disk>.<ext>`. */
export function convertTask(disk: 'boot' | 'root', format: ImageFormat, outDir: string): Task {
  const source = disk === 'boot' ? 'install:esp' : 'export-pool';
  const name = outputFileNames(format)[disk];
  return {
    id: `convert:${disk}`,
    stage: 'convert',
    title: `convert the ${disk} disk to ${format}`,
    deps: [source],
    inputs: { format },
    version: 1,
    tools: ['qemu-img'],
    artifacts: [{ name, kind: 'disk' }],
    exports: [{ artifact: name, to: path.join(outDir, name) }],
    async run(ctx) {
      const input = ctx.deps[source]!.paths[diskFile(disk)]!;
      const output = path.join(ctx.staging, name);
      if (format === 'raw') {
        // Converting raw to raw is a copy: keep it sparse and reflinked where possible.
        await ctx.copyDisk(input, output);
        return;
      }
      // A converted image takes at most about the input's allocated bytes.
      await ensureFreeSpace(ctx.staging, await allocatedSize(input), `the ${format} ${disk} disk`);
      // -p prints percentages that the runner turns into progress.
      const [command, ...rest] = qemuImgConvertArgs(format, input, output);
      await ctx.exec('qemu-img', [command!, '-p', ...rest], {
        quiet: true,
        onLine: (line) => {
          const match = /\((\d+(?:\.\d+)?)\/100%\)/.exec(line);
          if (match) ctx.progress(Number(match[1]) / 100, `${disk} disk`);
        },
      });
    },
  };
}

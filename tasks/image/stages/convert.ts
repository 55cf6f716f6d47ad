import { stat } from 'node:fs/promises';
import path from 'node:path';
import { hashFileContent } from '../../../lib/caching/file-hash.ts';
import { allocatedSize, ensureFreeSpace } from '../../../lib/caching/free-space.ts';
import type { Task, TaskContext } from '../../../lib/engine/task.ts';
import type { ImageFormat } from '../config.ts';
import { outputFileNames, qemuImgConvertArgs } from '../generators.ts';
import { diskFile } from './create-disks.ts';

/**
 * `convert:<disk>`: qemu-img convert of the final raw disk, with its sha256. post-vm places it in
 * the output folder (`<out>/nixos.<disk>.<ext>`), together with the other disk and image-info.json.
 */
export function convertTask(disk: 'boot' | 'root', format: ImageFormat): Task {
  const source = disk === 'boot' ? 'install:esp' : 'export-pool';
  const name = outputFileNames(format)[disk];
  return {
    id: `convert:${disk}`,
    stage: 'convert',
    title: `convert the ${disk} disk to ${format}`,
    deps: [source],
    // vpc's force_size came later: only vpc entries made without it must convert again
    inputs: format === 'vpc' ? { format, forceSize: true } : { format },
    // post-vm records the sha256: a rerun with the same inputs (run --force, after gc) may write other
    // bytes (qemu-img's VDI and VHD headers carry a random UUID), and image-info.json must follow
    keyedByValues: true,
    version: 2,
    tools: ['qemu-img'],
    artifacts: [
      { name, kind: 'disk' },
      { name: 'sha256', kind: 'value' },
    ],
    async run(ctx) {
      const input = ctx.deps[source]!.paths[diskFile(disk)]!;
      const output = path.join(ctx.staging, name);
      // Converting raw to raw is a copy: keep it sparse and reflinked where possible.
      if (format === 'raw') await ctx.copyDisk(input, output);
      else await qemuImgConvert(ctx, format, disk, input, output);
      // Hashed here rather than in post-vm, so the two disks are hashed in parallel branches.
      const { size } = await stat(output);
      const sha256 = await hashFileContent(output, {
        onProgress: (hashed) => ctx.progress(hashed / size, `sha256 of the ${disk} disk`),
        signal: ctx.signal,
      });
      return { sha256 };
    },
  };
}

async function qemuImgConvert(ctx: TaskContext<any>, format: ImageFormat, disk: string, input: string, output: string): Promise<void> {
  // A converted image takes at most about the input's allocated bytes.
  await ensureFreeSpace(ctx.staging, await allocatedSize(input), `the ${format} ${disk} disk`);
  const [command, ...rest] = qemuImgConvertArgs(format, input, output);
  // -p prints percentages that the runner turns into progress.
  await ctx.exec('qemu-img', [command!, '-p', ...rest], {
    quiet: true,
    onLine: (line) => {
      const match = /\((\d+(?:\.\d+)?)\/100%\)/.exec(line);
      if (match) ctx.progress(Number(match[1]) / 100, `${disk} disk`);
    },
  });
}

import { execFile } from 'node:child_process';
import { promisify } from 'node:util';

const run = promisify(execFile);

/**
 * Copies a disk image keeping its holes: `cp --reflink=auto --sparse=always`.
 * Node's copyFile and streams write every zero and would fill a sparse image.
 */
export async function copyDisk(source: string, destination: string, signal?: AbortSignal): Promise<void> {
  await run('cp', copyDiskArgs(source, destination), { signal });
}

/** The argv after `cp` that copyDisk runs (task logs show it as a command). */
export function copyDiskArgs(source: string, destination: string): string[] {
  return ['--reflink=auto', '--sparse=always', '--', source, destination];
}

import { statSync } from 'node:fs';
import { stat } from 'node:fs/promises';
import path from 'node:path';

/** Where disk and ZFS tools live; a non-login root shell or sudo may leave them off PATH. */
const SBIN_DIRS = ['/usr/local/sbin', '/usr/sbin', '/sbin'];

/** PATH with the sbin folders added at the end where missing. */
export function searchPath(envPath = process.env['PATH'] ?? ''): string {
  const dirs = envPath.split(path.delimiter);
  return [...dirs, ...SBIN_DIRS.filter((dir) => !dirs.includes(dir))].join(path.delimiter);
}

/** Finds a program on `envPath` (PATH and the sbin folders by default), or undefined. The path is not resolved through links. */
export async function whichTool(name: string, envPath = searchPath()): Promise<string | undefined> {
  for (const candidate of candidates(name, envPath)) {
    const info = await stat(candidate).catch(() => undefined);
    if (info && isProgram(info)) return candidate;
  }
  return undefined;
}

/** `whichTool` without waiting, for start-up checks that run before anything async. */
export function findProgram(name: string, envPath = searchPath()): string | undefined {
  for (const candidate of candidates(name, envPath)) {
    const info = statSync(candidate, { throwIfNoEntry: false });
    if (info && isProgram(info)) return candidate;
  }
  return undefined;
}

function candidates(name: string, envPath: string): string[] {
  if (name.includes('/')) return [name];
  return envPath.split(path.delimiter).filter(Boolean).map((dir) => path.join(dir, name));
}

function isProgram(info: { isFile(): boolean; mode: number }): boolean {
  return info.isFile() && (info.mode & 0o111) !== 0;
}

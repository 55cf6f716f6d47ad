import { lstat, mkdtemp, readlink, realpath, rmdir, stat } from 'node:fs/promises';
import path from 'node:path';
import { ConfigError } from '../engine/config-error.ts';
import type { CliArgs } from './args.ts';

/** Commands that take the cache lock, so write into the cache folder. */
const WRITES_CACHE: readonly CliArgs['command'][] = ['build', 'run', 'shell', 'clean', 'gc', 'verify'];
const MAINTENANCE: readonly CliArgs['command'][] = ['clean', 'gc', 'verify'];

/**
 * Checks `--cache-dir` and `--out` before anything is created, as usage errors (exit 2): a file
 * where a folder goes, a folder that cannot be written, an output folder inside the cache (which
 * `clean` and `gc` would delete) or inside the Nix store. `--out` only where it is written (build,
 * run): `./result` may well be nix-build's link.
 */
export async function checkFolderOptions(args: CliArgs): Promise<void> {
  const problems: string[] = [];
  const folders: (readonly [string, string])[] = [['--cache-dir', args.cacheDir]];
  const writesOut = args.command === 'build' || args.command === 'run';
  if (writesOut) folders.push(['--out', args.out]);
  for (const [option, dir] of folders) {
    const info = await stat(dir).catch(() => undefined);
    if (!info && (await lstat(dir).catch(() => undefined))?.isSymbolicLink()) {
      problems.push(`${option} ${dir}: is a link to ${await readlink(dir)}, which does not exist (create that folder, or give another)`);
      continue;
    }
    if (info && !info.isDirectory()) {
      problems.push(`${option} ${dir}: exists and is not a folder (give a folder, or a path that does not exist yet)`);
      continue;
    }
    // where it leads first: a nix-build result link on NixOS is read-only too, and this says why
    const misplaced = option === '--out' ? await misplacedOutput(args) : undefined;
    if (misplaced !== undefined) {
      problems.push(misplaced);
      continue;
    }
    // clean, gc and verify create no missing cache folder: nothing to write then
    const written = option === '--out' || (WRITES_CACHE.includes(args.command) && (info !== undefined || !MAINTENANCE.includes(args.command)));
    const problem = written ? await unwritable(dir) : undefined;
    if (problem) problems.push(`${option} ${dir}: ${problem}`);
  }
  if (problems.length > 0) throw new ConfigError(problems);
}

/** Why the output folder must not be where it is: inside the cache, or in the Nix store. */
async function misplacedOutput(args: CliArgs): Promise<string | undefined> {
  const [out, cache] = await Promise.all([resolvedPath(args.out), resolvedPath(args.cacheDir)]);
  if (out === cache || out.startsWith(`${cache}/`)) {
    return `--out ${args.out}: lies inside --cache-dir ${args.cacheDir}, where \`clean\` and \`gc\` would delete the images (give a folder outside the cache)`;
  }
  if (out === '/nix/store' || out.startsWith('/nix/store/')) {
    return `--out ${args.out}: leads into the Nix store (${out}), which is not for writing (a nix-build result link? give another folder)`;
  }
  return undefined;
}

/**
 * Why `dir` (or the folder it would be created in) cannot be written, if it cannot: found by
 * making and removing a folder there, since access(2) answers differently under Deno (mode bits
 * only: no root override, no read-only file system).
 */
async function unwritable(dir: string): Promise<string | undefined> {
  let existing = path.resolve(dir);
  while (!(await stat(existing).catch(() => undefined))) existing = path.dirname(existing);
  if (!(await stat(existing)).isDirectory()) return `${existing} is not a folder`;
  try {
    await rmdir(await mkdtemp(path.join(existing, '.write-check-')));
    return undefined;
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    return `${existing} cannot be written (${code === 'EROFS' ? 'read-only file system' : code === 'EACCES' || code === 'EPERM' ? 'permission denied' : code})`;
  }
}

/** The absolute path with every link in its existing part resolved (the rest may not exist yet). */
async function resolvedPath(dir: string): Promise<string> {
  let existing = path.resolve(dir);
  const rest: string[] = [];
  for (;;) {
    const real = await realpath(existing).catch(() => undefined);
    if (real !== undefined) return path.join(real, ...rest);
    rest.unshift(path.basename(existing));
    existing = path.dirname(existing);
  }
}

// The config's checks against the build host: files that must exist, the system, owners and
// NIX_PATH's nixpkgs. Kept apart from the schema, which looks at the JSON alone.
import { spawnSync } from 'node:child_process';
import { lstatSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { ConfigIssue } from './config.ts';
import { nixpkgsInNixPath } from './nix-path.ts';

/** A JSON object (not an array or null). */
export function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** A Nix store path: /nix/store/<32 base-32 characters>-<name>. */
export const storePath = /^\/nix\/store\/[0-9a-df-np-sv-z]{32}-[A-Za-z0-9+_?=-][A-Za-z0-9+._?=-]{0,210}$/;

/** A user or group name chown would look up (a numeric id is taken as it is). */
export const ownerName = /^[A-Za-z_][A-Za-z0-9_.-]{0,31}\$?$/;

/** What is at a path: a file, a folder, something else (a device, a socket), or nothing (undefined). */
export type PathKind = 'file' | 'folder' | 'other' | undefined;

/** The kind of `file` after following symlinks; undefined when it is missing or cannot be looked at. */
export function pathKind(file: string): PathKind {
  try {
    const info = statSync(file, { throwIfNoEntry: false });
    return info === undefined ? undefined : info.isFile() ? 'file' : info.isDirectory() ? 'folder' : 'other';
  } catch {
    return undefined;
  }
}

function isSymlink(file: string): boolean {
  try {
    return lstatSync(file).isSymbolicLink();
  } catch {
    return false;
  }
}

/**
 * Paths in the raw config that are missing or of the wrong kind (contents' sources, configFile,
 * channelSource, the system). Checked on the raw input, so a config with other mistakes still
 * reports missing files; a folder where a file belongs is refused now, not when install gets to it.
 */
export function misplacedFiles(raw: unknown, baseDir: string, kindOf: (p: string) => PathKind, toplevelMustExist = true): ConfigIssue[] {
  if (!isPlainObject(raw)) return [];
  const base = resolve(baseDir);
  const issues: ConfigIssue[] = [];
  const check = (path: string, value: unknown, what: string, want: 'file' | 'folder' | 'any') => {
    if (typeof value !== 'string' || value === '') return;
    const full = resolve(base, value);
    const kind = kindOf(full);
    if (kind === undefined) issues.push({ path, message: `${what} not found: ${full} (relative paths are taken from ${base})` });
    else if (want !== 'any' && kind !== want) issues.push({ path, message: `must be a ${want}, but ${full} is ${kind === 'other' ? 'neither a file nor a folder' : `a ${kind}`}` });
  };
  if (Array.isArray(raw['contents'])) {
    raw['contents'].forEach((item: unknown, i) => {
      if (!isPlainObject(item)) return;
      check(`contents[${i}].source`, item['source'], 'source', 'any');
      // cp -a copies a link as a link, and chmod would follow it to the file on the build host
      if (typeof item['source'] === 'string' && item['source'] !== '' && item['mode'] !== undefined && isSymlink(resolve(base, item['source']))) {
        issues.push({ path: `contents[${i}].mode`, message: `the source ${resolve(base, item['source'])} is a symbolic link, which is copied as a link and has no mode of its own: leave out mode, or name the file it points to` });
      }
    });
  }
  if (Array.isArray(raw['contents'])) issues.push(...nestedInNonFolder(raw['contents'], base, kindOf));
  check('configFile', raw['configFile'], 'Nix file', 'file');
  // only copied with includeChannel; otherwise it only has to exist, as before
  check('channelSource', raw['channelSource'], 'nixpkgs source', raw['includeChannel'] === false ? 'any' : 'folder');
  const system = raw['system'];
  if (isPlainObject(system)) {
    check('system.expression', system['expression'], 'Nix file', 'any');
    issues.push(...systemProblems(system, base, kindOf, toplevelMustExist));
  }
  return issues;
}

// Found now, not by the build after the disks are made; no nix call: the build still checks the store path's validity.
function systemProblems(system: Record<string, unknown>, base: string, kindOf: (p: string) => PathKind, toplevelMustExist: boolean): ConfigIssue[] {
  const issues: ConfigIssue[] = [];
  const { toplevel, expression } = system;
  // lstat's answer: a store path may be a symlink, even one that leads nowhere on this host
  if (toplevelMustExist && typeof toplevel === 'string' && storePath.test(toplevel) && kindOf(toplevel) === undefined && !isSymlink(toplevel)) {
    issues.push({
      path: 'system.toplevel',
      message: `must exist on this host, but ${toplevel} does not: build the system here (nix-build) or copy it into this host's store (nix copy) first, or give "flake" or "expression" instead`,
    });
  }
  if (typeof expression === 'string' && expression !== '') {
    // nix-build takes a file, or a folder holding default.nix
    const full = resolve(base, expression);
    const kind = kindOf(full);
    const needs = 'must be a Nix file or a folder holding default.nix';
    if (kind === 'folder' && kindOf(join(full, 'default.nix')) !== 'file') {
      issues.push({ path: 'system.expression', message: `${needs}, but ${full} is a folder without default.nix` });
    } else if (kind === 'other') {
      issues.push({ path: 'system.expression', message: `${needs}, but ${full} is neither a file nor a folder` });
    }
  }
  return issues;
}

// A target inside another entry's target needs that one to be a folder, whichever comes first.
function nestedInNonFolder(items: readonly unknown[], base: string, kindOf: (p: string) => PathKind): ConfigIssue[] {
  const entries = items.map((item) =>
    isPlainObject(item) && typeof item['target'] === 'string' && typeof item['source'] === 'string' && item['source'] !== ''
      ? { target: item['target'], source: resolve(base, item['source']) }
      : undefined,
  );
  const issues: ConfigIssue[] = [];
  entries.forEach((inner, j) => {
    entries.forEach((outer, i) => {
      if (!inner || !outer || i === j || !inner.target.startsWith(`${outer.target}/`)) return;
      const kind = kindOf(outer.source);
      if (kind === 'folder' || kind === undefined) return;
      issues.push({
        path: `contents[${j}].target`,
        message: `lies inside "${outer.target}", which contents[${i}] makes ${kind === 'file' ? 'a file' : 'neither a file nor a folder'} (from ${outer.source}): it must be a folder to hold anything`,
      });
    });
  });
  return issues;
}

/** Whether the build host knows a user (`passwd`) or group name, through NSS as chown will ask. */
export function hostHasName(database: 'passwd' | 'group', name: string): boolean {
  const found = spawnSync('getent', [database, name], { stdio: 'ignore' });
  // without getent the answer is unknown: chown will tell
  return found.error !== undefined || found.status === 0;
}

/** Owner names the build host does not know: chown looks them up there, and would fail install after the pool is made. */
export function unknownOwners(raw: unknown, hasName: (database: 'passwd' | 'group', name: string) => boolean): ConfigIssue[] {
  if (!isPlainObject(raw) || !Array.isArray(raw['contents'])) return [];
  const issues: ConfigIssue[] = [];
  raw['contents'].forEach((item: unknown, i) => {
    if (!isPlainObject(item)) return;
    for (const [field, database] of [['user', 'passwd'], ['group', 'group']] as const) {
      const name = item[field];
      if (typeof name !== 'string' || !ownerName.test(name) || hasName(database, name)) continue;
      issues.push({ path: `contents[${i}].${field}`, message: `the build host has no ${field} "${name}" (names are looked up there; give a numeric id for one it does not have)` });
    }
  });
  return issues;
}

const CHANNEL_CHOICES = 'set channelSource to a nixpkgs checkout, put nixpkgs=PATH in NIX_PATH, or set includeChannel to false';

/** With includeChannel and no channelSource, NIX_PATH's nixpkgs folder (checked like a channelSource, now), or why there is none. */
export function nixPathChannel(raw: unknown, nixPath: string | undefined, kindOf: (p: string) => PathKind): { issue: ConfigIssue } | { source: string } | undefined {
  if (!isPlainObject(raw) || (raw['includeChannel'] ?? true) !== true || raw['channelSource'] !== undefined) return undefined;
  const found = nixpkgsInNixPath(nixPath);
  if (found === undefined) return { issue: { path: 'includeChannel', message: `true needs a nixpkgs source to copy into the image: ${CHANNEL_CHOICES}` } };
  if ('url' in found) {
    return { issue: { path: 'includeChannel', message: `true needs a nixpkgs source to copy into the image, and NIX_PATH's nixpkgs=${found.url} is a URL, which is not used (the channel is copied from a folder): ${CHANNEL_CHOICES}` } };
  }
  // Nix takes a relative NIX_PATH entry from the current folder too
  const source = resolve(found.path);
  if (kindOf(source) !== 'folder') {
    return { issue: { path: 'includeChannel', message: `true takes nixpkgs from NIX_PATH, but nixpkgs=${found.path} is not a folder: fix NIX_PATH, set channelSource to a nixpkgs checkout, or set includeChannel to false` } };
  }
  return { source };
}

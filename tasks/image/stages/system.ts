import { realpathSync } from 'node:fs';
import { lstat } from 'node:fs/promises';
import path from 'node:path';
import { hashPath, type HashMemo } from '../../../lib/caching/file-hash.ts';
import { unhashable } from '../../../lib/caching/fingerprint.ts';
import type { Json, Task } from '../../../lib/engine/task.ts';
import type { Exec } from '../../../lib/execution/types.ts';
import type { SystemSpec } from '../config.ts';
import { pathKind } from '../config-host.ts';
import { isNixUrl, parseNixPath } from '../nix-path.ts';
import { nixOptions } from '../nix-options.ts';

/** Values the system task publishes. */
export interface SystemValues {
  readonly toplevel: string;
  /** Every store path the image needs, sorted. */
  readonly closure: readonly string[];
  /** NAR size of each closure path, in the same order (for progress and space checks). */
  readonly closureSizes: readonly number[];
}

/**
 * Resolves the configured system to a toplevel and its closure. A flake is re-evaluated on
 * every build (its inputs are not files we can hash), so that task is volatile; dependents
 * then fingerprint the resolved toplevel, never the flake reference.
 */
export function systemTask(system: SystemSpec, notInputs: readonly string[] = []): Task {
  const base = {
    id: 'system',
    stage: 'system',
    // install depends on which toplevel this resolves to, not on how it was asked for
    keyedByValues: true,
    deps: [],
    version: 2,
    tools: ['nix-store'],
    // nix-collect-garbage may have removed the closure since: then resolve (or build) it again
    checkCached: async (values: Readonly<Record<string, Json>>) => missingStorePath(values['closure']),
    artifacts: [
      { name: 'toplevel', kind: 'value' as const },
      { name: 'closure', kind: 'value' as const },
      { name: 'closureSizes', kind: 'value' as const },
    ],
  };
  if ('toplevel' in system) {
    return {
      ...base,
      title: `use system ${path.basename(system.toplevel)}`,
      inputs: { toplevel: system.toplevel },
      run: async (ctx) => describeClosure(ctx.exec, system.toplevel),
    };
  }
  if ('expression' in system) {
    // The expression's whole folder is hashed: it may import its neighbours. The cache and output
    // folders are left out when they lie inside it (as ./cache and ./result do beside a config).
    // Nix files the evaluation read elsewhere (../common, <nixpkgs>) are recorded with their hashes
    // and checked before the entry is trusted.
    const folder = expressionFolder(system.expression);
    const realFolder = realpathOr(folder);
    return {
      ...base,
      version: 3, // 3: records the files the evaluation read outside the expression's folder
      keyedByValues: ['toplevel', 'closure', 'closureSizes'],
      artifacts: [...base.artifacts, { name: 'evaluatedFiles', kind: 'value' as const }],
      title: `build system from ${path.basename(system.expression)}`,
      // <nixpkgs> resolves through the search path: a channel update or another pin is another system
      inputs: { expression: system.expression, attr: system.attr ?? null, nixPath: resolvedNixPath() },
      inputFiles: [{ path: folder, ignore: notInputs, follow: true }],
      tools: ['nix-store', 'nix-build'],
      checkCached: async (values, memo) => (await missingStorePath(values['closure'])) ?? (await changedEvaluatedFile(values['evaluatedFiles'], memo)),
      async run(ctx) {
        const attr = system.attr ? ['-A', system.attr] : [];
        const hashes = new Map<string, Promise<string>>();
        let evaluated = 0;
        // -v makes Nix name every file it evaluates. Each one outside the folder is hashed as its line
        // arrives, before the build phase, so an edit made while the build runs is not recorded as built.
        const built = await ctx.exec('nix-build', [system.expression, ...attr, '--no-out-link', '-v', ...nixOptions()], {
          quiet: true,
          onLine: (line) => {
            const file = EVALUATING.exec(line)?.[1];
            if (!file) return ctx.log(line);
            evaluated += 1;
            const real = realpathOr(file);
            // the store never changes; the folder is hashed as an input file already
            if (real.startsWith('/nix/store/') || isInside(real, realFolder) || hashes.has(file)) return;
            hashes.set(file, evaluatedFileHash(file));
          },
        });
        ctx.log(`the evaluation read ${evaluated} Nix file(s), ${hashes.size} of them outside ${folder} and the Nix store`);
        const evaluatedFiles: Record<string, string> = {};
        for (const file of [...hashes.keys()].sort()) evaluatedFiles[file] = await hashes.get(file)!;
        return { ...(await describeClosure(ctx.exec, lastLine(built.stdout))), evaluatedFiles };
      },
    };
  }
  return {
    ...base,
    title: `build system ${system.flake}`,
    volatile: true,
    inputs: { flake: system.flake },
    tools: ['nix-store', 'nix'],
    async run(ctx) {
      const [ref, name] = system.flake.split('#') as [string, string];
      // quoted as nixos-rebuild does: a name like "web.1" is one attribute, not two
      const attr = `${ref}#nixosConfigurations."${name}".config.system.build.toplevel`;
      // --json rather than --print-out-paths, which Nix 2.8 (Debian 12) does not have.
      const built = await ctx.exec('nix', ['--extra-experimental-features', 'nix-command flakes', 'build', attr, '--no-link', '--json', ...nixOptions()], { quiet: true });
      const [result] = JSON.parse(built.stdout) as { outputs: { out?: string } }[];
      return describeClosure(ctx.exec, lastLine(result?.outputs.out ?? ''));
    },
  };
}

/** The first path of a cached closure that is no longer on disk, as a reason; undefined when all are there. */
async function missingStorePath(closure: Json | undefined): Promise<string | undefined> {
  const paths = Array.isArray(closure) ? closure.filter((p): p is string => typeof p === 'string') : [];
  const present = await Promise.all(paths.map((p) => lstat(p).then(() => true, () => false)));
  const missing = paths.filter((_p, i) => !present[i]);
  if (missing.length === 0) return undefined;
  return `${missing[0]}${missing.length > 1 ? ` and ${missing.length - 1} more closure path(s)` : ''} no longer in the Nix store (garbage-collected?)`;
}

/** The line Nix prints at -v for every file it evaluates. */
const EVALUATING = /^evaluating file '(.+)'$/;

function isInside(file: string, folder: string): boolean {
  const relative = path.relative(folder, file);
  return relative !== '' && !relative.startsWith('..') && !path.isAbsolute(relative);
}

function realpathOr(file: string): string {
  try {
    return realpathSync(file);
  } catch {
    return file;
  }
}

/** A file's hash, or the stand-in inputs get: stable only for a missing file, never for an unreadable one. */
async function evaluatedFileHash(file: string, memo?: HashMemo): Promise<string> {
  return hashPath(file, { memo }).catch((error: NodeJS.ErrnoException) => unhashable(error, file));
}

/** The first file an earlier evaluation read that has changed since, as a reason; undefined when none has. */
async function changedEvaluatedFile(recorded: Json | undefined, memo?: HashMemo): Promise<string | undefined> {
  if (recorded === undefined || recorded === null || typeof recorded !== 'object' || Array.isArray(recorded)) return undefined;
  const entries = Object.entries(recorded);
  // a few at a time: an evaluation of NixOS from a checkout reads thousands of files
  for (let i = 0; i < entries.length; i += 32) {
    const batch = entries.slice(i, i + 32);
    const now = await Promise.all(batch.map(([file]) => evaluatedFileHash(file, memo)));
    const changed = batch.findIndex(([, hash], j) => now[j] !== hash);
    if (changed >= 0) return `${batch[changed]![0]} ${now[changed] === 'missing' ? 'is gone' : 'changed'} since the last evaluation`;
  }
  return undefined;
}

/**
 * The search path `<nixpkgs>` resolves through, each path resolved: NIX_PATH, or Nix's default
 * (the user's and root's channels) when it is unset. A channel update moves the profile links, so
 * the resolved paths change even when the text of NIX_PATH does not.
 */
export function resolvedNixPath(nixPath = process.env['NIX_PATH'], home = process.env['HOME'] ?? '/root'): string {
  const entries = nixPath !== undefined
    ? parseNixPath(nixPath)
    : [`${home}/.nix-defexpr/channels`, 'nixpkgs=/nix/var/nix/profiles/per-user/root/channels/nixpkgs', '/nix/var/nix/profiles/per-user/root/channels'];
  return entries
    .map((entry) => {
      const at = entry.indexOf('=');
      const [prefix, target] = at >= 0 ? [entry.slice(0, at + 1), entry.slice(at + 1)] : ['', entry];
      return isNixUrl(target) ? entry : `${prefix}${realpathOr(target)}`;
    })
    .join(':');
}

function lastLine(text: string): string {
  const line = text.trim().split('\n').at(-1)?.trim() ?? '';
  if (!line.startsWith('/nix/store/')) throw new Error(`expected a store path from nix, got "${line}"`);
  return line;
}

/** The closure of a toplevel (sorted) with each path's NAR size. */
export async function describeClosure(exec: Exec, toplevel: string): Promise<{ toplevel: string; closure: string[]; closureSizes: number[] }> {
  await exec('nix-store', ['--check-validity', toplevel]);
  const closure = (await exec('nix-store', ['--query', '--requisites', toplevel], { quiet: true })).stdout.split('\n').filter(Boolean).sort();
  const sizes = (await exec('nix-store', ['--query', '--size', ...closure], { quiet: true })).stdout.split('\n').filter(Boolean);
  return { toplevel, closure, closureSizes: sizes.map(Number) };
}

/**
 * The folder whose files an expression may import: a folder expression (holding default.nix) is
 * that folder; a file's is the folder it lies in, after symlinks, since Nix resolves a linked
 * file's relative imports from where the link points.
 */
function expressionFolder(expression: string): string {
  if (pathKind(expression) === 'folder') return expression;
  return path.dirname(realpathOr(expression));
}

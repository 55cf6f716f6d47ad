import { randomUUID } from 'node:crypto';
import { lstat, realpath } from 'node:fs/promises';
import type { GraphNode, Json } from '../engine/task.ts';
import { canonicalJson } from './canonical-json.ts';
import { whichTool } from '../execution/which.ts';
import { hashPath, sha256, type HashMemo } from './file-hash.ts';

/** Bumped when the manifest's meaning changes, so old entries stop matching. */
export const MANIFEST_FORMAT = 1;

/** Everything a task's output depends on; its canonical hash is the fingerprint. */
export interface Manifest {
  readonly format: number;
  readonly id: string;
  readonly version: number;
  readonly inputs: Json;
  /** Input file or folder path → content hash. */
  readonly files: Readonly<Record<string, string>>;
  /** Tool name → hash of the binary found on PATH, or "missing". */
  readonly tools: Readonly<Record<string, string>>;
  /** Dependency id → its fingerprint (or, for volatile dependencies, the hash of its outputs). */
  readonly deps: Readonly<Record<string, string>>;
}

/** One field that differs between two manifests, as `explain` shows it. */
export interface ManifestChange {
  readonly field: string;
  readonly before: string | undefined;
  readonly after: string | undefined;
}

/** Builds the manifest of a node from its declaration and its dependencies' fingerprints. */
export async function buildManifest(
  node: GraphNode,
  depKeys: Readonly<Record<string, string>>,
  memo?: HashMemo,
): Promise<Manifest> {
  const files: Record<string, string> = {};
  for (const input of node.inputFiles ?? []) {
    const { path: file, ignore = [], follow = false } = typeof input === 'string' ? { path: input } : input;
    const target = follow ? await realpath(file).catch(() => file) : file;
    files[file] = await hashInput(target, memo, ignore).catch((error: NodeJS.ErrnoException) => unhashable(error, target));
  }
  const tools: Record<string, string> = {};
  for (const tool of node.tools ?? []) {
    const found = await whichTool(tool);
    // the binary itself: Debian's nix-store, mcopy and mkfs.vfat are links, whose text never changes on an upgrade
    tools[tool] = found ? await realpath(found).then((binary) => hashPath(binary, { memo })).catch(() => 'unreadable') : 'missing';
  }
  return { format: MANIFEST_FORMAT, id: node.id, version: node.version, inputs: node.inputs, files, tools, deps: { ...depKeys } };
}

/**
 * What stands for an input that could not be hashed. Only a missing one has a stable value: any
 * other error must never make a task look fresh, or a change behind it would go unnoticed.
 */
export async function unhashable(error: NodeJS.ErrnoException, target: string): Promise<string> {
  // a name inside a folder that cannot be opened by the name readdir gave (Deno hands out names
  // that are not UTF-8 with their bad bytes replaced) is no missing input
  const exists = await lstat(target).then(() => true, () => false);
  if ((error.code === 'ENOENT' || error.code === 'ENOTDIR') && !exists) return 'missing';
  return `unreadable (${error.code ?? error.message}) ${randomUUID()}`;
}

/** An input's hash with its own mode: a folder's entries carry theirs, and `cp -a` copies a contents file's too. */
async function hashInput(target: string, memo: HashMemo | undefined, ignore: readonly string[]): Promise<string> {
  const mode = (await lstat(target)).mode & 0o7777;
  return sha256(`mode ${mode.toString(8)}\0${await hashPath(target, { memo, ignore })}`);
}

/** The fingerprint: sha256 over the canonical manifest. */
export function fingerprintOf(manifest: Manifest): string {
  return sha256(canonicalJson(manifest as unknown as Json));
}

/** Lists the fields that differ, as dotted paths (`inputs.format`, `deps.partition`, `files./etc/x`). */
export function diffManifests(before: Manifest, after: Manifest): ManifestChange[] {
  const a = flatten(before as unknown as Json);
  const b = flatten(after as unknown as Json);
  const fields = [...new Set([...a.keys(), ...b.keys()])].sort();
  return fields.filter((f) => a.get(f) !== b.get(f)).map((field) => ({ field, before: a.get(field), after: b.get(field) }));
}

function flatten(value: Json, prefix = '', out = new Map<string, string>()): Map<string, string> {
  if (value !== null && typeof value === 'object' && !Array.isArray(value)) {
    const record = value as { readonly [key: string]: Json };
    const keys = Object.keys(record);
    if (keys.length === 0 && prefix) out.set(prefix, '{}');
    for (const key of keys) flatten(record[key]!, prefix ? `${prefix}.${key}` : key, out);
  } else {
    out.set(prefix, canonicalJson(value));
  }
  return out;
}

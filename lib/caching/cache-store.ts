import cacache from 'cacache';
import { randomBytes } from 'node:crypto';
import { lstat, mkdir, readdir, readFile, rename, rm, stat, utimes, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { ArtifactKind, ArtifactSpec, DependencyOutputs, Json } from '../engine/task.ts';
import type { Manifest } from './fingerprint.ts';
import { hashPath, type HashMemo, type StatHash } from './file-hash.ts';
import { allocatedBytes } from './free-space.ts';
import { fail, ok, type Result } from '../engine/result.ts';

/** What a file looked like when it was published; an entry is trusted only while this still holds. */
export interface StatStamp {
  readonly path: string;
  readonly size: number;
  readonly mtimeMs: number;
  readonly ino: number;
}

/** A published file-like artifact. */
export interface StoredArtifact {
  readonly kind: Exclude<ArtifactKind, 'value'>;
  /** Every regular file and link under it (one stamp for a file or disk), paths relative to the artifact. */
  readonly stamps: readonly StatStamp[];
  /** Content hash taken at publish for files and folders (`verify` rehashes them); disks are too big to hash on every publish. */
  readonly sha256?: string;
}

/** One cached run of a task. */
export interface CacheEntry {
  readonly fingerprint: string;
  readonly taskId: string;
  readonly manifest: Manifest;
  readonly values: Readonly<Record<string, Json>>;
  readonly artifacts: Readonly<Record<string, StoredArtifact>>;
  readonly publishedAt: string;
  readonly durationMs: number;
  /** Allocated bytes of the entry's artifacts. */
  readonly bytes: number;
}

/** Why a lookup found nothing usable. */
export type CacheMiss =
  | { readonly reason: 'absent' }
  | { readonly reason: 'damaged'; readonly detail: string };

/** The cache folder: cacache for index, manifests and values; artifacts published beside it by rename. */
export interface CacheStore {
  readonly dir: string;
  readonly indexDir: string;
  readonly artifactsDir: string;
  readonly stagingDir: string;
  readonly workDir: string;
  readonly logsDir: string;
  /** The folder holding a task's run logs. */
  logDir(taskId: string): string;
  lookup(fingerprint: string): Promise<Result<CacheEntry, CacheMiss>>;
  /** The entry of a task id the last build used or published (for `explain`, plan's reasons and `shell`). */
  lastEntry(taskId: string): Promise<CacheEntry | undefined>;
  /** Makes a published entry the one `lastEntry` returns for its task (gc, after evicting the last one). */
  setLastEntry(taskId: string, fingerprint: string): Promise<void>;
  /**
   * Records that a build used this cached entry, so that `lastEntry` (what plan's and explain's
   * "changed:" compare with) is the entry the previous build used, not the last one published.
   */
  markUsed(taskId: string, fingerprint: string): Promise<void>;
  /** The task id an index record names, read without checking its artifacts (for messages about damaged entries). */
  recordedTaskId(fingerprint: string): Promise<string | undefined>;
  /** Whether a task id was ever published in this cache (its entry may since be evicted). */
  hasBuilt(taskId: string): Promise<boolean>;
  /** Makes a fresh, private staging folder for a run of a task. */
  makeStaging(label: string): Promise<string>;
  /** Moves a staging folder into place and records the entry; only then is it trusted. */
  publish(args: {
    fingerprint: string;
    taskId: string;
    manifest: Manifest;
    values: Record<string, Json>;
    specs: readonly ArtifactSpec[];
    staging: string;
    durationMs: number;
  }): Promise<CacheEntry>;
  /** Absolute path of an artifact of a published entry. */
  artifactPath(fingerprint: string, name: string): string;
  /** Marks an entry as used now (gc evicts the least recently used). */
  touch(fingerprint: string): Promise<void>;
  /** Removes an entry's index record and its artifacts. */
  evict(fingerprint: string): Promise<void>;
  /** File-hash memo loaded from the cache folder; `save` writes it back. */
  loadHashMemo(): Promise<HashMemo & { save(): Promise<void> }>;
}

const entryKey = (fingerprint: string): string => `entry/${fingerprint}`;
const lastKey = (taskId: string): string => `last/${taskId}`;

/** Opens (without creating anything) the cache at `dir`. */
export function openCache(dir: string): CacheStore {
  const root = path.resolve(dir);
  const indexDir = path.join(root, 'index');
  const artifactsDir = path.join(root, 'artifacts');
  const stagingDir = path.join(root, 'staging');
  const workDir = path.join(root, 'work');
  const logsDir = path.join(root, 'logs');
  const memoFile = path.join(root, 'file-hashes.json');

  const readEntry = async (key: string): Promise<CacheEntry | undefined> => {
    const data = await cacache.get(indexDir, key).catch((error: NodeJS.ErrnoException) => {
      if (error.code === 'ENOENT') return undefined;
      throw error;
    });
    return data ? (JSON.parse(data.data.toString('utf8')) as CacheEntry) : undefined;
  };

  // the "last" pointer of a task: which of its entries plan, explain and shell compare with or open
  const readLast = async (taskId: string): Promise<string | undefined> =>
    ((await readEntry(lastKey(taskId))) as unknown as { fingerprint: string } | undefined)?.fingerprint;
  const writeLast = async (taskId: string, fingerprint: string): Promise<void> => {
    await cacache.put(indexDir, lastKey(taskId), JSON.stringify({ fingerprint }));
  };

  const store: CacheStore = {
    dir: root,
    indexDir,
    artifactsDir,
    stagingDir,
    workDir,
    logsDir,
    logDir: (taskId) => path.join(logsDir, safeName(taskId)),

    async lookup(fingerprint) {
      let entry: CacheEntry | undefined;
      try {
        entry = await readEntry(entryKey(fingerprint));
      } catch (error) {
        return fail({ reason: 'damaged', detail: `index entry unreadable (${(error as Error).message.split('\n')[0]})` });
      }
      if (!entry) return fail({ reason: 'absent' });
      if (entry.fingerprint !== fingerprint) return fail({ reason: 'damaged', detail: 'index entry belongs to another fingerprint' });
      for (const [name, artifact] of Object.entries(entry.artifacts)) {
        const problem = await checkStamps(path.join(artifactsDir, fingerprint, name), artifact);
        if (problem) return fail({ reason: 'damaged', detail: `artifact "${name}": ${problem}` });
      }
      return ok(entry);
    },

    async lastEntry(taskId) {
      try {
        const fingerprint = await readLast(taskId);
        return fingerprint ? await readEntry(entryKey(fingerprint)) : undefined;
      } catch {
        return undefined;
      }
    },

    async setLastEntry(taskId, fingerprint) {
      await writeLast(taskId, fingerprint);
    },

    async recordedTaskId(fingerprint) {
      const entry = await readEntry(entryKey(fingerprint)).catch(() => undefined);
      return typeof entry?.taskId === 'string' ? entry.taskId : undefined;
    },

    async markUsed(taskId, fingerprint) {
      if ((await readLast(taskId).catch(() => undefined)) !== fingerprint) await writeLast(taskId, fingerprint);
    },

    async hasBuilt(taskId) {
      return (await cacache.get.info(indexDir, lastKey(taskId)).catch(() => null)) !== null;
    },

    async makeStaging(label) {
      // The pid in the name lets the next run tell a dead run's leftovers from a live one's.
      const folder = path.join(stagingDir, `${process.pid}.${safeName(label)}.${randomBytes(4).toString('hex')}`);
      await mkdir(folder, { recursive: true });
      return folder;
    },

    async publish({ fingerprint, taskId, manifest, values, specs, staging, durationMs }) {
      const target = path.join(artifactsDir, fingerprint);
      await mkdir(artifactsDir, { recursive: true });
      await rm(target, { recursive: true, force: true }); // a damaged earlier copy
      await removeKey(indexDir, `verify/${fingerprint}`);
      await rename(staging, target);
      const artifacts: Record<string, StoredArtifact> = {};
      let bytes = 0;
      for (const spec of specs) {
        if (spec.kind === 'value') continue;
        const stamps = await stampTree(path.join(target, spec.name));
        const sha256 = spec.kind === 'disk' ? undefined : await hashPath(path.join(target, spec.name));
        artifacts[spec.name] = { kind: spec.kind, stamps, ...(sha256 ? { sha256 } : {}) };
        bytes += await allocatedBytes(path.join(target, spec.name));
      }
      const entry: CacheEntry = {
        fingerprint,
        taskId,
        manifest,
        values,
        artifacts,
        publishedAt: new Date().toISOString(),
        durationMs,
        bytes,
      };
      await cacache.put(indexDir, entryKey(fingerprint), JSON.stringify(entry));
      await writeLast(taskId, fingerprint);
      return entry;
    },

    artifactPath(fingerprint, name) {
      return path.join(artifactsDir, fingerprint, name);
    },

    async touch(fingerprint) {
      const now = new Date();
      await utimes(path.join(artifactsDir, fingerprint), now, now).catch(() => undefined);
    },

    async evict(fingerprint) {
      await removeKey(indexDir, entryKey(fingerprint));
      // verify's disk baseline belongs to this copy of the artifacts, not to the fingerprint
      await removeKey(indexDir, `verify/${fingerprint}`);
      await rm(path.join(artifactsDir, fingerprint), { recursive: true, force: true });
    },

    async loadHashMemo() {
      let saved: Record<string, StatHash> = {};
      try {
        saved = JSON.parse(await readFile(memoFile, 'utf8')) as Record<string, StatHash>;
      } catch {
        // no memo yet, or a damaged one: hashing again is always safe
      }
      let dirty = false;
      return {
        get: (file: string) => saved[file],
        set: (file: string, entry: StatHash) => {
          saved[file] = entry;
          dirty = true;
        },
        async save() {
          if (!dirty) return;
          await mkdir(root, { recursive: true });
          const temp = `${memoFile}.${process.pid}.tmp`;
          await writeFile(temp, JSON.stringify(saved));
          await rename(temp, memoFile);
        },
      };
    },
  };
  return store;
}

/** Removes an index key; removeFully drops its bucket too, so a later lookup is a clean miss (the typings lack the option). */
async function removeKey(indexDir: string, key: string): Promise<void> {
  const remove = cacache.rm.entry as (cache: string, key: string, options: { removeFully: boolean }) => Promise<unknown>;
  await remove(indexDir, key, { removeFully: true }).catch(() => undefined);
}

/** Records size, mtime and inode of every file under a path. */
async function stampTree(root: string): Promise<StatStamp[]> {
  const stamps: StatStamp[] = [];
  const walk = async (abs: string, rel: string): Promise<void> => {
    const info = await lstat(abs);
    if (info.isDirectory()) {
      for (const name of (await readdir(abs)).sort()) await walk(path.join(abs, name), rel ? `${rel}/${name}` : name);
      return;
    }
    stamps.push({ path: rel, size: info.size, mtimeMs: wholeMs(info.mtimeMs), ino: info.ino });
  };
  await walk(root, '');
  return stamps;
}

/** Returns what is wrong with a published artifact, or undefined when it is as published. */
async function checkStamps(root: string, artifact: StoredArtifact): Promise<string | undefined> {
  for (const stamp of artifact.stamps) {
    const file = stamp.path ? path.join(root, stamp.path) : root;
    let info;
    try {
      info = await lstat(file);
    } catch {
      return `${stamp.path || 'file'} is missing`;
    }
    if (info.size !== stamp.size) return `${stamp.path || 'file'} has size ${info.size}, published with ${stamp.size}`;
    if (wholeMs(info.mtimeMs) !== stamp.mtimeMs || info.ino !== stamp.ino) return `${stamp.path || 'file'} was modified after publishing`;
  }
  if (artifact.kind === 'folder') {
    try {
      if (!(await stat(root)).isDirectory()) return 'is not a folder';
    } catch {
      return 'folder is missing';
    }
  }
  return undefined;
}

/** What dependents get from an entry: its values and artifact paths, and the artifacts' content hashes. */
export function entryOutputs(store: CacheStore, entry: CacheEntry): { outputs: DependencyOutputs; hashes: Record<string, string> } {
  const paths: Record<string, string> = {};
  const hashes: Record<string, string> = {};
  for (const [name, artifact] of Object.entries(entry.artifacts)) {
    paths[name] = store.artifactPath(entry.fingerprint, name);
    if (artifact.sha256) hashes[name] = artifact.sha256;
  }
  return { outputs: { values: entry.values, paths }, hashes };
}

/** Node reports sub-millisecond mtimes, Deno whole milliseconds: compare what both agree on. */
function wholeMs(mtimeMs: number): number {
  return Math.floor(mtimeMs);
}

/** A task id or label as one file name (ids may hold `/` or `:`). */
export function safeName(label: string): string {
  return label.replace(/[^A-Za-z0-9_.-]+/g, '_');
}

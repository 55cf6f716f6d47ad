import type { z } from 'zod';
import type { Exec } from '../execution/types.ts';
import type { HashMemo } from '../caching/file-hash.ts';
import type { Sweeper } from '../caching/sweep.ts';
import type { Requirement } from './requirement.ts';
import type { ShellProvider } from './shell.ts';

/** Any value that survives JSON.stringify and back unchanged. */
export type Json = null | boolean | number | string | readonly Json[] | { readonly [key: string]: Json };

/** What a task publishes: a JSON value, or a file, folder or disk image laid out in its staging folder. */
export type ArtifactKind = 'value' | 'file' | 'folder' | 'disk';

/** One declared output of a task. File-like artifacts are found at `<staging>/<name>`. */
export interface ArtifactSpec {
  readonly name: string;
  readonly kind: ArtifactKind;
}

/** A dependency as seen from a running task: its published values and artifact paths. */
export interface DependencyOutputs {
  readonly values: Readonly<Record<string, Json>>;
  /** Absolute paths of the dependency's file, folder and disk artifacts (read-only: copy before writing). */
  readonly paths: Readonly<Record<string, string>>;
}

/** What a task's `run` (or a resource's acquire/release) receives. */
export interface TaskContext<I extends Json = Json> {
  readonly id: string;
  readonly inputs: I;
  /** Aborted on Ctrl-C, SIGTERM or an engine shutdown; the exec helper honours it. */
  readonly signal: AbortSignal;
  /** Runs argv (never a shell), streams each line to the task output and its log, kills the process group on abort. */
  readonly exec: Exec;
  /** The outputs of the tasks this one depends on, by task id. */
  readonly deps: Readonly<Record<string, DependencyOutputs>>;
  /** Folder where the task lays out its file, folder and disk artifacts; published only on success. */
  readonly staging: string;
  /** Scratch folder removed after the task, whatever its outcome. */
  readonly scratch: string;
  /** Handles of the resources (acquired by resource tasks) this task depends on. */
  readonly resources: Readonly<Record<string, unknown>>;
  /** Writes a line to the task's output and log. */
  log(line: string): void;
  /** Reports progress of long work (0..1), shown as a bar or as periodic lines. */
  progress(fraction: number, detail?: string): void;
  /** Registers a cleanup run after the task on success, failure and abort alike (last registered runs first). */
  cleanup(fn: () => Promise<void> | void): void;
  /** Copies a disk image without filling its holes (reflink where the file system can). */
  copyDisk(source: string, destination: string): Promise<void>;
  /** Releases a resource early (unmount, export) so this task can publish what it holds. */
  release(resourceId: string): Promise<void>;
  /** Shows a warning in the build's notes (and the task's log). */
  warn(message: string): void;
  /**
   * Registers a cleanup for the end of the whole run (after the last task, on failure and abort too),
   * once per key: for services several tasks share, such as a daemon the build started.
   */
  atRunEnd(key: string, fn: (note: RunNote) => Promise<void> | void): void;
}

/**
 * Tells the user something at the end of a run, when no task's log is open any more: a build note
 * (`--json`: a `notice` event); `warn` ones are shown as warnings.
 */
export type RunNote = (level: 'info' | 'warn', message: string) => void;

/**
 * A file or folder whose content goes into the fingerprint. `ignore` lists what the task never
 * reads, so changing it does not make the task stale: a plain name skips that entry of the folder
 * itself (a channel's `.git`); an absolute path skips that file or folder at any depth (the cache
 * and output folders, when they lie inside a hashed folder). A plain string, like `cp -a`, hashes a
 * symlink as its target path; `follow` hashes what it points to, for inputs that are read through
 * the link (a configuration.nix or an expression folder that is a symlink).
 */
export type InputFile = string | { readonly path: string; readonly ignore?: readonly string[]; readonly follow?: boolean };

/** Fields shared by every node of the graph. */
interface NodeBase<I extends Json> {
  /** Unique id, e.g. `create-disks:boot`. */
  readonly id: string;
  /** The stage this task belongs to; several tasks may share one (one per disk). */
  readonly stage: string;
  readonly title: string;
  readonly deps: readonly string[];
  /** JSON inputs; part of the fingerprint. */
  readonly inputs: I;
  /** Validates `inputs` before anything runs. */
  readonly inputsSchema?: z.ZodType<I>;
  /** Files or folders whose contents are part of the fingerprint. */
  readonly inputFiles?: readonly InputFile[];
  /** Programs whose binaries are part of the fingerprint (resolved on PATH). */
  readonly tools?: readonly string[];
  /** Bump when the implementation changes what it produces. */
  readonly version: number;
}

/** A task that produces cached artifacts. */
export interface Task<I extends Json = Json> extends NodeBase<I> {
  readonly kind?: 'task';
  readonly artifacts: readonly ArtifactSpec[];
  /** Never cached: runs every time; dependents fingerprint its output values instead (e.g. resolving a flake). */
  readonly volatile?: boolean;
  /**
   * Dependents fingerprint this task's output values rather than its fingerprint, so a rerun
   * that produces the same values (the same system toplevel) leaves them fresh. A list names the
   * values that count; the others are the task's own bookkeeping (what `checkCached` compares).
   */
  readonly keyedByValues?: boolean | readonly string[];
  /**
   * Dependencies this task reads only through some of their file or folder artifacts: it is keyed
   * on those artifacts' content (the sha256 recorded when they were published) instead of the
   * dependency's fingerprint, so a rerun of the dependency that publishes the same content leaves
   * it fresh (install:esp reads only install's `esp` folder).
   */
  readonly keyedOnContent?: Readonly<Record<string, readonly string[]>>;
  /**
   * Checks a cached entry against what lies outside the cache before it is trusted (store paths the
   * host's garbage collector may have removed since, files an evaluation read); a returned message
   * makes the task run again, with the message as the reason. `memo` remembers file hashes by stat.
   */
  checkCached?(values: Readonly<Record<string, Json>>, memo?: HashMemo): Promise<string | undefined>;
  /**
   * Artifacts also placed at user-facing paths (hard link or copy, then rename) whenever the task is
   * fresh or ran: its own, or with `from` a dependency's. They are placed as one set (all copied,
   * then all renamed, in this order), so a folder of outputs changes together or not at all.
   */
  readonly exports?: readonly { readonly artifact: string; readonly to: string; readonly from?: string }[];
  /** Returns the values of its `value` artifacts; file-like artifacts must be in `ctx.staging`. */
  run(ctx: TaskContext<I>): Promise<Record<string, Json> | void>;
}

/**
 * A task that holds something (a mounted pool) for the tasks that depend on it.
 * It publishes nothing; all its dependents form one transaction: if one must run, all run.
 */
export interface ResourceTask<I extends Json = Json, H = unknown> extends NodeBase<I> {
  readonly kind: 'resource';
  acquire(ctx: TaskContext<I>): Promise<H>;
  release(ctx: TaskContext<I>, handle: H): Promise<void>;
}

/** A node of the graph. */
export type GraphNode = Task<any> | ResourceTask<any, any>;

/** Where the runner keeps things; handed to plugins. */
export interface PluginEnvironment {
  /** The parsed `--config` JSON, or undefined when none was given. */
  readonly config: unknown;
  /** The folder of the config file (relative paths in it are taken from there), else the cwd. */
  readonly configDir: string;
  readonly configFile: string | undefined;
  readonly outDir: string;
  readonly cacheDir: string;
  /**
   * False for commands that only look (plan, explain, graph, logs, shell): checks that matter only
   * before running, such as a system that must be in this host's store, may then be skipped.
   */
  readonly willRun?: boolean;
}

/**
 * A plugin turns the configuration into tasks; a Taskfile lists plugins, later ones may depend on
 * earlier ones' tasks. It may carry sweepers that release what a killed run left in its folders.
 */
export type Plugin = ((env: PluginEnvironment) => readonly GraphNode[] | Promise<readonly GraphNode[]>) & {
  readonly sweepers?: readonly Sweeper[];
  /** Programs the tasks run; `doctor` lists them and `build` stops (exit 2) when one is missing. */
  readonly requirements?: readonly Requirement[];
  /** Opens the state a stage produced for `shell <stage>`. */
  readonly shell?: ShellProvider;
};

/** True for resource nodes. */
export function isResource(node: GraphNode): node is ResourceTask<any, any> {
  return node.kind === 'resource';
}

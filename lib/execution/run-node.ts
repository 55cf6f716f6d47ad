import { mkdir, mkdtemp, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { safeName, type CacheEntry, type CacheStore } from '../caching/cache-store.ts';
import type { Manifest } from '../caching/fingerprint.ts';
import { copyDiskWithProgress } from '../caching/disk-copy.ts';
import { mountsUnder } from './mount-table.ts';
import { describeTaskFailure, type TaskFailure } from '../engine/failure.ts';
import { fail, ok, type Result } from '../engine/result.ts';
import type { DependencyOutputs, Json, ResourceTask, RunNote, Task, TaskContext } from '../engine/task.ts';
import type { Reporter } from '../logging/events.ts';
import { CommandError } from './command-error.ts';
import { createExec } from './exec.ts';
import { loggedExec, openTaskLog, type TaskLog } from './task-log.ts';

/** Everything needed to run one node. */
export interface NodeRun {
  readonly store: CacheStore;
  readonly reporter: Reporter;
  readonly signal: AbortSignal;
  readonly deps: Readonly<Record<string, DependencyOutputs>>;
  readonly resources: Readonly<Record<string, unknown>>;
  /** Releases the resource this node uses (for `ctx.release`). */
  readonly release?: () => Promise<Result<void, TaskFailure>>;
  readonly manifest: Manifest;
  readonly fingerprint: string;
  /** Run-scoped cleanups by key (see TaskContext.atRunEnd). */
  readonly runEnd: Map<string, (note: RunNote) => Promise<void> | void>;
}

/** A finished task run: its values and published entry, or why it failed. */
export type TaskRun =
  | { readonly ok: true; readonly values: Record<string, Json>; readonly entry: CacheEntry | undefined; readonly durationMs: number }
  | { readonly ok: false; readonly error: TaskFailure; readonly durationMs: number };

/** A held resource. */
export type ResourceHold =
  | {
      readonly ok: true;
      readonly handle: unknown;
      readonly startedAt: number;
      /** Idempotent: the first call releases, later calls return the first result. */
      readonly release: () => Promise<Result<void, TaskFailure>>;
      /** Removes the resource's scratch folder; called once the whole transaction is over (users may move files out of it after release). */
      readonly close: () => Promise<void>;
    }
  | { readonly ok: false; readonly error: TaskFailure; readonly durationMs: number };

interface Session {
  readonly ctx: TaskContext<any>;
  readonly logFile: string;
  readonly tail: readonly string[];
  runCleanups(): Promise<string[]>;
  /** From now on commands run even though the run was aborted (release, cleanups). */
  cleanupMode(): void;
  close(): Promise<void>;
}

/** Runs a task in a fresh staging folder and publishes it on success (unless it is volatile). */
export async function runTask(node: Task<any>, run: NodeRun): Promise<TaskRun> {
  const started = Date.now();
  const prepared = await prepare(() => run.store.makeStaging(node.id), (staging) => openSession(node, run, staging), node.id);
  if (!prepared.ok) return { ok: false, error: prepared.error, durationMs: Date.now() - started };
  const { staging, session } = prepared.value;
  let values: Record<string, Json> = {};
  let error: TaskFailure | undefined;
  try {
    values = ((await node.run(session.ctx)) ?? {}) as Record<string, Json>;
    for (const spec of node.artifacts) {
      if (spec.kind === 'value' && !(spec.name in values)) {
        error = { reason: 'missing-artifact', artifact: spec.name, message: `${node.id} returned no value "${spec.name}"` };
      } else if (spec.kind !== 'value' && !(await exists(path.join(staging, spec.name)))) {
        error = { reason: 'missing-artifact', artifact: spec.name, message: `${node.id} did not write ${spec.kind} "${spec.name}"` };
      }
    }
  } catch (thrown) {
    error = toFailure(thrown, session, run.signal);
  }
  // Cleanups first: nothing mounted or attached may be published.
  const cleanupErrors = await session.runCleanups();
  if (!error && cleanupErrors.length > 0) error = { reason: 'threw', message: `cleanup failed: ${cleanupErrors[0]}`, tail: session.tail.slice(-20), logFile: session.logFile };
  if (!error && run.signal.aborted) error = { reason: 'aborted' };
  let entry: CacheEntry | undefined;
  if (!error && !node.volatile) {
    try {
      entry = await run.store.publish({
        fingerprint: run.fingerprint,
        taskId: node.id,
        manifest: run.manifest,
        values,
        specs: node.artifacts,
        staging,
        durationMs: Date.now() - started,
      });
    } catch (thrown) {
      error = { reason: 'threw', message: `publishing failed: ${(thrown as Error).message}`, tail: session.tail.slice(-20), logFile: session.logFile };
    }
  }
  await session.close();
  if (error || node.volatile) await rm(staging, { recursive: true, force: true });
  const durationMs = Date.now() - started;
  return error ? { ok: false, error, durationMs } : { ok: true, values, entry, durationMs };
}

/** Acquires a resource; the returned release runs the resource's release and its cleanups. */
export async function holdResource(node: ResourceTask<any, any>, run: NodeRun): Promise<ResourceHold> {
  const startedAt = Date.now();
  const prepared = await prepare(async () => undefined, (staging) => openSession(node, run, staging), node.id);
  if (!prepared.ok) return { ok: false, error: prepared.error, durationMs: Date.now() - startedAt };
  const { session } = prepared.value;
  let handle: unknown;
  try {
    handle = await node.acquire(session.ctx);
  } catch (thrown) {
    const error = toFailure(thrown, session, run.signal);
    await session.runCleanups();
    await session.close();
    return { ok: false, error, durationMs: Date.now() - startedAt };
  }
  let released: Promise<Result<void, TaskFailure>> | undefined;
  const release = (): Promise<Result<void, TaskFailure>> => {
    released ??= (async () => {
      session.cleanupMode();
      let error: TaskFailure | undefined;
      try {
        await node.release(session.ctx, handle);
      } catch (thrown) {
        error = toFailure(thrown, session, new AbortController().signal);
      }
      const cleanupErrors = await session.runCleanups();
      if (!error && cleanupErrors.length > 0) error = { reason: 'threw', message: `cleanup failed: ${cleanupErrors[0]}`, tail: session.tail.slice(-20), logFile: session.logFile };
      return error ? fail(error) : ok(undefined);
    })();
    return released;
  };
  const close = async (): Promise<void> => {
    await release();
    await session.close();
  };
  return { ok: true, handle, startedAt, release, close };
}

/**
 * Makes a task's staging folder and session. A cache folder that cannot be written fails the task
 * as data, like any other failure, and leaves no staging folder behind.
 */
async function prepare<S extends string | undefined>(
  makeStaging: () => Promise<S>,
  open: (staging: S) => Promise<Session>,
  id: string,
): Promise<Result<{ staging: S; session: Session }, TaskFailure>> {
  let staging: S | undefined;
  try {
    staging = await makeStaging();
    return ok({ staging, session: await open(staging) });
  } catch (thrown) {
    if (staging !== undefined) await rm(staging, { recursive: true, force: true }).catch(() => undefined);
    const message = thrown instanceof Error ? thrown.message : String(thrown);
    return fail({ reason: 'threw', message: `could not prepare ${id}'s folders in the cache: ${message}`, tail: [] });
  }
}

async function openSession(node: Task<any> | ResourceTask<any, any>, run: NodeRun, staging: string | undefined): Promise<Session> {
  const { store, reporter } = run;
  // the scratch folder before the log: a folder that cannot be made must not leave an open log behind
  await mkdir(store.workDir, { recursive: true });
  const scratch = await mkdtemp(path.join(store.workDir, `${process.pid}.${safeName(node.id)}.`));
  let log: TaskLog;
  try {
    log = await openTaskLog(store.logDir(node.id), node.id, reporter);
  } catch (error) {
    await rm(scratch, { recursive: true, force: true });
    throw error;
  }
  // The task's own signal: the run's abort reaches it until the session closes.
  const controller = new AbortController();
  // the run's reason goes along: it names the signal that stopped the run
  const onAbort = (): void => controller.abort(run.signal.reason);
  if (run.signal.aborted) controller.abort(run.signal.reason);
  else run.signal.addEventListener('abort', onAbort, { once: true });
  const cleanups: (() => Promise<void> | void)[] = [];
  const abortable = createExec({ signal: controller.signal, onLine: log.line });
  // Cleanups and releases must still run their commands after an abort (unmount, export).
  const unabortable = createExec({ onLine: log.line });
  let current = abortable;
  const exec = loggedExec(() => current, log);
  const progress = (fraction: number, detail?: string): void =>
    reporter.event({ type: 'progress', id: node.id, fraction: Math.max(0, Math.min(1, fraction)), detail });
  const ctx: TaskContext<any> = {
    id: node.id,
    inputs: node.inputs,
    signal: controller.signal,
    exec,
    deps: run.deps,
    staging: staging ?? scratch,
    scratch,
    resources: run.resources,
    log: log.line,
    progress,
    cleanup: (fn) => {
      cleanups.push(fn);
    },
    copyDisk: (source, destination) => copyDiskWithProgress(source, destination, exec, progress),
    warn: (message) => {
      log.line(`warning: ${message}`);
      reporter.event({ type: 'notice', level: 'warn', message: `${node.id}: ${message}` });
    },
    atRunEnd: (key, fn) => {
      if (!run.runEnd.has(key)) run.runEnd.set(key, fn);
    },
    release: async (resourceId) => {
      if (!(resourceId in run.resources) || !run.release) throw new Error(`${node.id} holds no resource "${resourceId}"`);
      const result = await run.release();
      if (!result.ok) throw new Error(`releasing ${resourceId} failed: ${describeTaskFailure(result.error)}`);
    },
  };
  return {
    ctx,
    logFile: log.file,
    tail: log.tail,
    cleanupMode() {
      current = unabortable;
    },
    async runCleanups() {
      current = unabortable;
      const errors: string[] = [];
      while (cleanups.length > 0) {
        const fn = cleanups.pop()!;
        try {
          await fn();
        } catch (error) {
          const message = (error as Error).message;
          log.line(`cleanup failed: ${message}`);
          errors.push(message);
        }
      }
      return errors;
    },
    async close() {
      run.signal.removeEventListener('abort', onAbort);
      // Never delete through a mount: a bound /dev or a mounted pool would lose host or image data.
      const mounts = await mountsUnder(scratch);
      if (mounts.length > 0) {
        log.line(`not removing ${scratch}: still mounted at ${mounts.join(', ')}`);
        reporter.event({ type: 'notice', level: 'warn', message: `${node.id}: left ${scratch} in place, still mounted at ${mounts.join(', ')}; the next run cleans it up` });
      } else {
        await rm(scratch, { recursive: true, force: true });
      }
      await log.close();
    },
  };
}

function toFailure(thrown: unknown, session: Session, signal: AbortSignal): TaskFailure {
  if (signal.aborted) return { reason: 'aborted' };
  if (thrown instanceof CommandError) {
    const { command, exitCode, signal: killedBy, tail, spawnError } = thrown.failure;
    return { reason: 'command-failed', command, exitCode, signal: killedBy, spawnError, tail: tail.slice(-20), logFile: session.logFile };
  }
  const message = thrown instanceof Error ? thrown.message : String(thrown);
  session.ctx.log(`error: ${message}`);
  return { reason: 'threw', message, tail: session.tail.slice(-20), logFile: session.logFile };
}

async function exists(file: string): Promise<boolean> {
  try {
    await stat(file);
    return true;
  } catch {
    return false;
  }
}

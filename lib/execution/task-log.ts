import { createWriteStream } from 'node:fs';
import { mkdir, readdir, rm } from 'node:fs/promises';
import path from 'node:path';
import type { Reporter } from '../logging/events.ts';
import { CommandError } from './command-error.ts';
import { formatCommand } from './exec.ts';
import type { Exec } from './types.ts';

/** Logs kept per task; older ones are removed when a new run starts. */
const LOGS_KEPT = 5;

/** Lines a task's failure shows from the end of its output. */
const TAIL_KEPT = 200;

/** One run's log of a task: a file in the task's log folder, the output's tail, and the reporter. */
export interface TaskLog {
  readonly file: string;
  /** The last lines of output, for a failure's summary. */
  readonly tail: readonly string[];
  /** A line of output: into the file, the tail and the reporter (`output` events). */
  line(text: string): void;
  /** Text into the file only (commands and their status). */
  write(text: string): void;
  /** Closes the file; lines after this are dropped. */
  close(): Promise<void>;
}

/** Opens a new log for one run of task `id` in `dir`, removing the oldest beyond {@link LOGS_KEPT}. */
export async function openTaskLog(dir: string, id: string, reporter: Reporter): Promise<TaskLog> {
  await mkdir(dir, { recursive: true });
  await pruneLogs(dir);
  const file = path.join(dir, `${new Date().toISOString().replace(/[:.]/g, '-')}-${process.pid}.log`);
  const stream = createWriteStream(file, { flags: 'a' });
  // Run-end cleanups may still log after the session closed: drop those lines rather than crash.
  const write = (text: string): void => {
    if (!stream.writableEnded) stream.write(text);
  };
  const tail: string[] = [];
  return {
    file,
    tail,
    line(text) {
      write(`${text}\n`);
      tail.push(text);
      if (tail.length > TAIL_KEPT) tail.shift();
      reporter.event({ type: 'output', id, line: text });
    },
    write,
    close: () => new Promise<void>((resolve) => stream.end(resolve)),
  };
}

/**
 * An exec that writes each command, its exit status and its time into the log: where a slow or
 * failing stage is first looked into. `current` gives the exec to use at each call (a session
 * switches to one that Ctrl-C no longer stops once cleanups begin).
 */
export function loggedExec(current: () => Exec, log: Pick<TaskLog, 'write'>): Exec {
  return async (file, args, options) => {
    log.write(`$ ${formatCommand(file, args)}\n`);
    const started = performance.now();
    const took = (): string => `${Math.round(performance.now() - started)} ms`;
    try {
      const result = await current()(file, args, options);
      log.write(`# exit ${result.exitCode} after ${took()}\n`);
      return result;
    } catch (error) {
      // the status as README's `logs` shows it (`# exit 1 after 3 ms`), or why it did not end
      const status = error instanceof CommandError && error.failure.signal === undefined && error.failure.exitCode >= 0 && !error.failure.spawnError
        ? `exit ${error.failure.exitCode}`
        : `failed (${(error as Error).message})`;
      log.write(`# ${status} after ${took()}\n`);
      throw error;
    }
  };
}

async function pruneLogs(dir: string): Promise<void> {
  const names = (await readdir(dir)).filter((n) => n.endsWith('.log')).sort();
  for (const name of names.slice(0, Math.max(0, names.length - (LOGS_KEPT - 1)))) {
    await rm(path.join(dir, name), { force: true });
  }
}

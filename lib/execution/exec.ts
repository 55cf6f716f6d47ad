import { execa } from 'execa';
import type { Exec, ExecOptions, ExecResult } from './types.ts';
import { CommandError } from './command-error.ts';
import { lineSplitter } from './line-splitter.ts';

/** How a runner's exec helper reports and stops its children. */
export interface ExecSetup {
  /** Aborting kills the child's whole process group. */
  readonly signal?: AbortSignal;
  /** Receives every output line of every command (the task log and the renderer). */
  readonly onLine?: (line: string) => void;
  /** Grace period between SIGTERM and SIGKILL of a process group, in ms. */
  readonly killGraceMs?: number;
}

/** Shell-like rendering of an argv, for messages and logs only (never executed). */
export function formatCommand(file: string, args: readonly string[]): string {
  const quote = (word: string): string =>
    /^[\w@%+=:,./-]+$/.test(word) ? word : `'${word.replaceAll("'", `'\\''`)}'`;
  return [file, ...args].map(quote).join(' ');
}

/** Sends a signal to a whole process group, ignoring groups that are already gone. */
function killGroup(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pid, signal);
  } catch {
    // the group has exited already
  }
}

/** True while any process is left in a process group. */
function groupExists(pid: number): boolean {
  try {
    process.kill(-pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Creates an exec helper: argv only, every line streamed to `onLine`, the child
 * in its own process group so an abort can kill it with all its descendants.
 */
export function createExec(setup: ExecSetup = {}): Exec {
  const grace = setup.killGraceMs ?? 3000;
  return async function exec(file: string, args: readonly string[], options: ExecOptions = {}): Promise<ExecResult> {
    const command = formatCommand(file, args);
    const signal = options.ignoreAbort ? undefined : setup.signal;
    signal?.throwIfAborted();
    const tail: string[] = [];
    const emit = (line: string): void => {
      tail.push(line);
      if (tail.length > 40) tail.shift();
      options.onLine?.(line);
      if (!options.quiet) setup.onLine?.(line);
    };
    const child = execa(file, [...args], {
      cwd: options.cwd,
      env: options.env ? { ...options.env } : undefined,
      extendEnv: true,
      input: options.input,
      stdin: options.input === undefined ? 'ignore' : 'pipe',
      reject: false,
      detached: true, // own process group: abort kills grandchildren too
      cleanup: true,
      stripFinalNewline: false,
      encoding: 'utf8',
      maxBuffer: 256 * 1024 * 1024,
    });
    const pid = child.pid;
    const splitOut = lineSplitter(emit);
    const splitErr = lineSplitter(emit);
    child.stdout?.on('data', (chunk: Buffer | string) => splitOut.push(chunk));
    child.stderr?.on('data', (chunk: Buffer | string) => splitErr.push(chunk));
    // Stopping: SIGTERM, SIGKILL after the grace, and after one more grace stop waiting: a process
    // stuck in the kernel (a hung FUSE daemon's client) never exits and must not hang the build.
    const timers: NodeJS.Timeout[] = [];
    let stopping = false;
    let giveUp: (() => void) | undefined;
    const gaveUp = new Promise<'gave-up'>((resolve) => {
      giveUp = () => resolve('gave-up');
    });
    const stop = (): void => {
      if (pid === undefined || stopping) return;
      stopping = true;
      killGroup(pid, 'SIGTERM');
      timers.push(setTimeout(() => killGroup(pid, 'SIGKILL'), grace));
      timers.push(setTimeout(() => giveUp?.(), 2 * grace));
    };
    let timedOut = false;
    if (options.timeoutMs !== undefined) {
      timers.push(
        setTimeout(() => {
          // already being stopped for an abort: that is what it will be reported as
          if (stopping) return;
          timedOut = true;
          stop();
        }, options.timeoutMs),
      );
    }
    signal?.addEventListener('abort', stop, { once: true });
    if (options.endGroupOnExit && pid !== undefined) {
      child.once('exit', () => {
        if (stopping || !groupExists(pid)) return;
        emit(`(the command exited but left processes running in its process group ${pid}; stopping them)`);
        killGroup(pid, 'SIGTERM');
        timers.push(setTimeout(() => killGroup(pid, 'SIGKILL'), grace));
      });
    }
    try {
      const settled = await Promise.race([child, gaveUp]);
      if (settled === 'gave-up') {
        // let this process exit without it: its pipes and handle would keep the event loop alive
        child.stdout?.destroy();
        child.stderr?.destroy();
        child.unref();
        throw new CommandError({
          command,
          exitCode: -1,
          signal: 'SIGKILL',
          tail,
          aborted: !timedOut,
          timedOutAfterMs: timedOut ? options.timeoutMs : undefined,
          leftRunning: pid,
        });
      }
      const result = settled;
      splitOut.end();
      splitErr.end();
      // A child that exited may leave grandchildren in its group; they must not outlive an abort or a timeout.
      if (stopping && pid !== undefined) killGroup(pid, 'SIGKILL');
      const stdout = typeof result.stdout === 'string' ? result.stdout : '';
      const stderr = typeof result.stderr === 'string' ? result.stderr : '';
      const exitCode = result.exitCode ?? -1;
      if (timedOut) {
        throw new CommandError({ command, exitCode, signal: result.signal ?? 'SIGTERM', tail, timedOutAfterMs: options.timeoutMs });
      }
      if (signal?.aborted) {
        throw new CommandError({ command, exitCode, signal: result.signal ?? 'SIGTERM', tail, aborted: true });
      }
      if (result.failed && !(options.okExitCodes ?? []).includes(exitCode)) {
        const spawnError = result.exitCode === undefined && result.signal === undefined ? result.shortMessage : undefined;
        throw new CommandError({ command, exitCode, signal: result.signal, tail, spawnError });
      }
      return { command, exitCode, stdout, stderr };
    } finally {
      for (const timer of timers) clearTimeout(timer);
      signal?.removeEventListener('abort', stop);
    }
  };
}

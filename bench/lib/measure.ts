// Timing and size helpers shared by the benchmarks.
import { execa } from 'execa';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';

/** Aborted on Ctrl-C or SIGTERM (see run.ts): running commands get SIGTERM, so the staged build and the script clean up. */
export const interruption = new AbortController();

/** Repository root. */
export const ROOT = path.resolve(import.meta.dirname, '../..');

/** One timed command. */
export interface Timed {
  readonly wallMs: number;
  /** user + system CPU time of the command and its children (only when asked for). */
  readonly cpuMs: number | undefined;
  readonly exitCode: number;
  readonly stdout: string;
  readonly stderr: string;
}

/** Options of {@link timeCommand}. */
export interface TimeOptions {
  readonly env?: Record<string, string>;
  readonly cwd?: string;
  /** Also measure CPU time, through /usr/bin/time (adds one fork to every measured command). */
  readonly cpu?: boolean;
}

/** Runs argv (never a shell) and measures its wall time; never throws on a non-zero exit. */
export async function timeCommand(file: string, args: readonly string[], options: TimeOptions = {}): Promise<Timed> {
  const cpuFile = options.cpu ? path.join(tmpdir(), `bench-cpu-${process.pid}-${Math.random().toString(36).slice(2)}`) : undefined;
  const [command, argv] = cpuFile ? ['/usr/bin/time', ['-f', '%U %S', '-o', cpuFile, file, ...args]] : [file, [...args]];
  const started = performance.now();
  const result = await execa(command, argv, {
    reject: false,
    cwd: options.cwd ?? ROOT,
    env: options.env,
    stdin: 'ignore',
    cancelSignal: interruption.signal,
  });
  if (interruption.signal.aborted) throw new Error('interrupted');
  const wallMs = performance.now() - started;
  let cpuMs: number | undefined;
  if (cpuFile) {
    const text = await readFile(cpuFile, 'utf8').catch(() => '');
    await rm(cpuFile, { force: true });
    const [user, system] = (text.trim().split('\n').at(-1) ?? '').split(' ').map(Number);
    cpuMs = user !== undefined && system !== undefined ? (user + system) * 1000 : undefined;
  }
  return { wallMs, cpuMs, exitCode: result.exitCode ?? -1, stdout: String(result.stdout), stderr: String(result.stderr) };
}

/** Times an async function. */
export async function timeIt<T>(fn: () => Promise<T>): Promise<{ ms: number; value: T }> {
  const started = performance.now();
  const value = await fn();
  return { ms: performance.now() - started, value };
}

/** Median of a non-empty list. */
export function median(values: readonly number[]): number {
  if (values.length === 0) throw new Error('median of nothing');
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

/** Allocated bytes of a file or tree as `du -s --block-size=1` counts them (hard links once). */
export async function duBytes(target: string): Promise<number> {
  const { stdout } = await execa('du', ['-s', '--block-size=1', target]);
  return Number(stdout.split('\t')[0]);
}

/** Flushes dirty pages so that one run's write-back does not land in the next run's time. */
export async function sync(): Promise<void> {
  await execa('sync');
}

/** A fresh folder under the system's temporary folder. */
export function scratchDir(label: string): Promise<string> {
  return mkdtemp(path.join(tmpdir(), `bench-${label}-`));
}

/** Fails with the command's output when it did not exit 0. */
export function expectSuccess(timed: Timed, what: string): Timed {
  if (timed.exitCode !== 0) {
    throw new Error(`${what} exited ${timed.exitCode}\n${timed.stdout.slice(-3000)}\n${timed.stderr.slice(-3000)}`);
  }
  return timed;
}

/** Rounds to a number of decimals (for results that are read by people). */
export function round(value: number, decimals = 0): number {
  const factor = 10 ** decimals;
  return Math.round(value * factor) / factor;
}

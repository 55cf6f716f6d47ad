import { execFileSync } from 'node:child_process';
import { processAlive } from '../../lib/execution/processes.ts';

/** Resolves after `ms` milliseconds. */
export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Polls `check` every `everyMs` until it holds; throws, naming `what`, after `ms`. */
export async function until(check: () => Promise<boolean> | boolean, what: string, ms = 60_000, everyMs = 100): Promise<void> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await check()) return;
    await sleep(everyMs);
  }
  throw new Error(`timed out after ${ms} ms waiting for ${what}`);
}

/** True while a process exists and is not a zombie (a dead child nobody reaped yet counts as gone). */
export const running = processAlive;

/** The pid of a process that has exited (a dead run's pid, for leftovers and stale locks). */
export const deadPid = (): number => Number(execFileSync('sh', ['-c', 'sh -c "echo \\$\\$"'], { encoding: 'utf8' }).trim());

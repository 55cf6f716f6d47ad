/** Details of a command that did not succeed. */
export interface CommandFailure {
  readonly command: string;
  readonly exitCode: number;
  readonly signal?: string | undefined;
  /** The last lines the command printed. */
  readonly tail: readonly string[];
  /** Set when the command was stopped because the run was aborted. */
  readonly aborted?: boolean;
  /** Why the program could not be started at all (not found, not executable). */
  readonly spawnError?: string | undefined;
  /** Set when the command was stopped for running longer than its `timeoutMs`. */
  readonly timedOutAfterMs?: number | undefined;
  /**
   * Set when the command was still there after SIGKILL and the grace period (stuck in the
   * kernel, or a descendant outside its process group holds its output open): it was left behind.
   */
  readonly leftRunning?: number | undefined;
}

/** Thrown by the exec helper; carries the command, its exit status and its last lines. */
export class CommandError extends Error {
  readonly failure: CommandFailure;

  constructor(failure: CommandFailure) {
    const status = failure.spawnError
      ? failure.spawnError
      : failure.timedOutAfterMs !== undefined
        ? `no answer within ${formatSeconds(failure.timedOutAfterMs)}, stopped`
        : failure.signal
          ? `killed by ${failure.signal}`
          : `exit status ${failure.exitCode}`;
    const left = failure.leftRunning === undefined ? '' : ` (pid ${failure.leftRunning} did not exit even after SIGKILL and was left behind)`;
    super(`${failure.command}: ${status}${left}`);
    this.name = 'CommandError';
    this.failure = failure;
  }
}

function formatSeconds(ms: number): string {
  return ms < 1000 ? `${ms} ms` : `${Math.round(ms / 100) / 10} s`;
}

/**
 * Whether a command ran and exited non-zero on its own: its answer, unlike a time limit, an
 * abort, a signal or a program that did not start, which prove nothing about what it was asked.
 */
export function ranAndFailed(error: unknown): boolean {
  if (!(error instanceof CommandError)) return false;
  const { timedOutAfterMs, spawnError, aborted, signal } = error.failure;
  return timedOutAfterMs === undefined && spawnError === undefined && !aborted && !signal;
}

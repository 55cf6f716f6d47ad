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
}

/** Thrown by the exec helper; carries the command, its exit status and its last lines. */
export class CommandError extends Error {
  readonly failure: CommandFailure;

  constructor(failure: CommandFailure) {
    const status = failure.spawnError
      ? failure.spawnError
      : failure.signal
        ? `killed by ${failure.signal}`
        : `exit status ${failure.exitCode}`;
    super(`${failure.command}: ${status}`);
    this.name = 'CommandError';
    this.failure = failure;
  }
}

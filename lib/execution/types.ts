/** Options for one command run through a task's exec helper. */
export interface ExecOptions {
  /** Working directory of the child. */
  readonly cwd?: string;
  /** Extra environment variables, merged over the runner's environment. */
  readonly env?: Readonly<Record<string, string | undefined>>;
  /** Text written to the child's stdin; without it stdin is ignored. */
  readonly input?: string;
  /** Exit codes that count as success besides 0. */
  readonly okExitCodes?: readonly number[];
  /** Keep this command's lines out of the task output and log (for bulk output parsed by the caller); `onLine` still gets them. */
  readonly quiet?: boolean;
  /** Called with every complete output line (stdout and stderr). */
  readonly onLine?: (line: string) => void;
  /**
   * Stops the command when it runs longer than this (SIGTERM to its process group, SIGKILL after
   * the grace period); it then fails with `timedOutAfterMs` set. For commands that normally
   * answer at once, so a hung service fails the task instead of hanging the build.
   */
  readonly timeoutMs?: number;
  /**
   * Runs even when the task has been aborted, and is not stopped by the abort: for commands that
   * undo a half-done step (export a pool, detach a loop device) before the task gives up.
   */
  readonly ignoreAbort?: boolean;
  /**
   * Once the command itself exits, stops what it left running in its process group (SIGTERM, then
   * SIGKILL after the grace period) and says so in its output: a background job would otherwise
   * hold its output open, and the task would wait for it without a word.
   */
  readonly endGroupOnExit?: boolean;
}

/** What a finished command produced. */
export interface ExecResult {
  readonly command: string;
  readonly exitCode: number;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs one program with an argv (never through a shell). Throws CommandError on failure. */
export type Exec = (file: string, args: readonly string[], options?: ExecOptions) => Promise<ExecResult>;

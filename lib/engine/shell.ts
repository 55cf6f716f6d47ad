import type { Exec } from '../execution/types.ts';
import type { DependencyOutputs } from './task.ts';

/** What a plugin's shell provider is given: the fresh outputs of the stage and everything before it. */
export interface ShellRequest {
  readonly stage: string;
  /** Outputs of every task up to and including the stage, by task id (all fresh in the cache). */
  readonly outputs: Readonly<Record<string, DependencyOutputs>>;
  /** A private working folder (removed afterwards); copies of checkpoints go here, never into the cache. */
  readonly workDir: string;
  readonly exec: Exec;
  readonly log: (line: string) => void;
}

/** A prepared shell: where to start it, what to tell the user, and how to undo everything. */
export interface ShellSession {
  readonly cwd: string;
  /** The command's whole environment (not added to the runner's): leave a variable out to unset it. */
  readonly env: Readonly<Record<string, string>>;
  /** Lines printed before the shell starts (what is mounted where). */
  readonly notes: readonly string[];
  release(): Promise<void>;
}

/** A plugin's way to open the state a stage produced (import and mount its pool, say). */
export type ShellProvider = (request: ShellRequest) => Promise<ShellSession>;

import type { TaskFailure } from '../engine/failure.ts';

/** Final state of a task in one run. */
export type TaskStatus = 'ran' | 'cached' | 'failed' | 'skipped';

/** A task began running. */
export interface TaskStartEvent {
  readonly type: 'task';
  readonly id: string;
  readonly stage: string;
  readonly status: 'started';
  readonly reason?: string;
}

/** A task reached its final state in this run. */
export interface TaskEndEvent {
  readonly type: 'task';
  readonly id: string;
  readonly stage: string;
  readonly status: TaskStatus;
  readonly reason: string;
  readonly durationMs: number;
  readonly fingerprint?: string | undefined;
  readonly bytes?: number | undefined;
  readonly failure?: TaskFailure | undefined;
}

/** What the engine tells renderers; `--json` prints the task and notice events as NDJSON. */
export type RunEvent =
  | TaskStartEvent
  | TaskEndEvent
  | { readonly type: 'output'; readonly id: string; readonly line: string }
  | { readonly type: 'progress'; readonly id: string; readonly fraction: number; readonly detail?: string | undefined }
  | { readonly type: 'notice'; readonly level: 'info' | 'warn'; readonly message: string };

/** One row of the end-of-build summary. */
export interface SummaryRow {
  readonly id: string;
  readonly stage: string;
  readonly title: string;
  readonly status: TaskStatus;
  readonly reason: string;
  readonly durationMs: number;
  readonly bytes: number;
  readonly fingerprint?: string | undefined;
  readonly failure?: TaskFailure | undefined;
}

/** How a run ended. */
export interface RunSummary {
  readonly ok: boolean;
  readonly interrupted: boolean;
  readonly durationMs: number;
  readonly tasks: readonly SummaryRow[];
}

/** A renderer: told which tasks will be considered, then every event, then the summary. */
export interface Reporter {
  begin(tasks: readonly { id: string; stage: string; title: string; deps: readonly string[] }[]): void;
  event(event: RunEvent): void;
  end(summary: RunSummary): Promise<void> | void;
}

import type { Reporter, RunEvent } from './events.ts';

/** `--json`: one JSON object per line on stdout, nothing else there; output lines go to the task logs only. */
export function createJsonReporter(write: (text: string) => void = (t) => process.stdout.write(t)): Reporter {
  const emit = (value: unknown): void => write(`${JSON.stringify(value)}\n`);
  return {
    begin() {},
    event(event: RunEvent) {
      if (event.type === 'task') emit(event);
      else if (event.type === 'notice') emit(event);
    },
    end(summary) {
      emit({ type: 'summary', ...summary });
    },
  };
}

import type { Reporter, RunEvent } from './events.ts';
import { formatBytes, formatDuration, formatSummary } from './format.ts';

/** Options of the line renderer. */
export interface LineReporterOptions {
  readonly write?: (text: string) => void;
  /** Print every output line of every command (else only on failure, from the log tail). */
  readonly verbose?: boolean;
  /** Minimum time between two progress lines of one task. */
  readonly progressEveryMs?: number;
}

const marks: Record<string, string> = { started: '▶', ran: '✔', cached: '↺', skipped: '↷', failed: '✖' };

/** Plain lines for CI logs and pipes: one line per state change, periodic progress lines, then the summary. */
export function createLineReporter(options: LineReporterOptions = {}): Reporter {
  const write = options.write ?? ((t: string) => process.stdout.write(t));
  const every = options.progressEveryMs ?? 5000;
  const lastProgress = new Map<string, number>();
  const lastFraction = new Map<string, number>();
  const say = (text: string): void => write(`${text}\n`);
  return {
    begin(tasks) {
      say(`${tasks.length} task(s) to consider`);
    },
    event(event: RunEvent) {
      switch (event.type) {
        case 'task': {
          const mark = marks[event.status] ?? '-';
          if (event.status === 'started') {
            say(`${mark} ${event.id}: started${event.reason ? ` (${event.reason})` : ''}`);
            return;
          }
          const extra = [event.durationMs ? formatDuration(event.durationMs) : '', event.bytes ? `${formatBytes(event.bytes)} written` : '']
            .filter(Boolean)
            .join(', ');
          say(`${mark} ${event.id}: ${event.status}${extra ? ` in ${extra}` : ''} (${event.reason})`);
          if (event.failure && 'tail' in event.failure && event.failure.tail.length > 0) {
            say(`  last lines of ${event.failure.logFile ?? 'the log'}:`);
            for (const line of event.failure.tail.slice(-15)) say(`  | ${line}`);
          }
          return;
        }
        case 'output':
          if (options.verbose) say(`  ${event.id}| ${event.line}`);
          return;
        case 'progress': {
          const now = Date.now();
          if (now - (lastProgress.get(event.id) ?? 0) < every && event.fraction < 1) return;
          // qemu-img reports 100% more than once
          if (event.fraction >= 1 && lastFraction.get(event.id) === 1) return;
          lastProgress.set(event.id, now);
          lastFraction.set(event.id, event.fraction >= 1 ? 1 : event.fraction);
          say(`  ${event.id}: ${Math.round(event.fraction * 100)}%${event.detail ? ` ${event.detail}` : ''}`);
          return;
        }
        case 'notice':
          say(`${event.level === 'warn' ? 'warning: ' : ''}${event.message}`);
          return;
      }
    },
    end(summary) {
      say('');
      say(formatSummary(summary));
    },
  };
}

import { Listr, type ListrTaskWrapper } from 'listr2';
import type { Reporter, RunEvent, TaskEndEvent } from './events.ts';
import { formatBytes, formatDuration, formatSummary } from './format.ts';

interface Row {
  readonly title: string;
  wrapper?: ListrTaskWrapper<unknown, any, any>;
  settle?: (event: TaskEndEvent) => void;
  final?: TaskEndEvent;
}

/** A text progress bar, 24 cells wide. */
function progressBar(fraction: number, detail?: string): string {
  const cells = 24;
  const filled = Math.round(fraction * cells);
  return `[${'█'.repeat(filled)}${'░'.repeat(cells - filled)}] ${Math.round(fraction * 100)}%${detail ? ` ${detail}` : ''}`;
}

/** The live tree drawn by listr2's default renderer on a terminal. */
export function createListrReporter(options: { verbose?: boolean } = {}): Reporter {
  const rows = new Map<string, Row>();
  let done: Promise<unknown> = Promise.resolve();
  const notices: string[] = [];
  let drawn = false;
  return {
    begin(tasks) {
      for (const task of tasks) rows.set(task.id, { title: task.id === task.title ? task.id : `${task.id}: ${task.title}` });
      const list = new Listr(
        tasks.map((task) => ({
          title: `${rows.get(task.id)!.title} (waiting)`,
          rendererOptions: { outputBar: options.verbose ? 8 : 2, persistentOutput: false },
          task: async (_ctx: unknown, wrapper: ListrTaskWrapper<unknown, any, any>) => {
            const row = rows.get(task.id)!;
            row.wrapper = wrapper;
            const final = row.final ?? (await new Promise<TaskEndEvent>((resolve) => (row.settle = resolve)));
            const took = final.durationMs ? ` [${formatDuration(final.durationMs)}${final.bytes ? `, ${formatBytes(final.bytes)}` : ''}]` : '';
            if (final.status === 'cached') return wrapper.skip(`${row.title}: cached (${final.reason})`);
            if (final.status === 'skipped') return wrapper.skip(`${row.title}: skipped (${final.reason})`);
            if (final.status === 'failed') throw new Error(`${row.title}: ${final.reason}`);
            wrapper.title = `${row.title}${took}`;
          },
        })),
        {
          concurrent: true,
          exitOnError: false,
          // listr2's own SIGINT handler exits at once (status 127), before the build's cleanup unmounts and exports
          registerSignalListeners: false,
          renderer: 'default',
          rendererOptions: { collapseSkips: true, collapseErrors: true, collapseSubtasks: false },
        },
      );
      done = list
        .run()
        .catch(() => undefined)
        .then(() => {
          drawn = true;
          for (const line of notices.splice(0)) process.stdout.write(`${line}\n`);
        });
    },
    event(event: RunEvent) {
      if (event.type === 'notice') {
        const line = `${event.level === 'warn' ? 'warning' : 'note'}: ${event.message}`;
        // once the tree is drawn (the run's end: stopping a daemon), a note is shown when it happens
        if (drawn) process.stdout.write(`${line}\n`);
        else notices.push(line);
        return;
      }
      const row = rows.get(event.id);
      if (!row) return;
      if (event.type === 'task') {
        if (event.status === 'started') {
          if (row.wrapper) row.wrapper.title = row.title;
          return;
        }
        row.final = event;
        row.settle?.(event);
      } else if (event.type === 'output') {
        if (row.wrapper) row.wrapper.output = event.line;
      } else if (row.wrapper) {
        row.wrapper.output = progressBar(event.fraction, event.detail);
      }
    },
    async end(summary) {
      await done;
      const write = (text: string): void => void process.stdout.write(`${text}\n`);
      for (const notice of notices) write(notice);
      for (const task of summary.tasks) {
        const failure = task.failure;
        if (failure && 'tail' in failure && failure.tail.length > 0) {
          write(`\n${task.id} failed: last lines of ${failure.logFile ?? 'its log'}:`);
          for (const line of failure.tail.slice(-15)) write(`  | ${line}`);
        }
      }
      write('');
      write(formatSummary(summary));
    },
  };
}

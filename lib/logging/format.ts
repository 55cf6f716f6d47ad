import type { RunSummary } from './events.ts';

/** Human duration: `850ms`, `12.3s`, `4m05s`. */
export function formatDuration(ms: number): string {
  if (ms < 1000) return `${Math.round(ms)}ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(1)}s`;
  const minutes = Math.floor(ms / 60_000);
  return `${minutes}m${String(Math.round((ms % 60_000) / 1000)).padStart(2, '0')}s`;
}

/** Human size in binary units: `512 B`, `16.0 MiB`. */
export function formatBytes(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return unit === 0 ? `${value} B` : `${value.toFixed(1)} ${units[unit]}`;
}

/** The end-of-build table: one line per task with status, duration and bytes written. */
export function formatSummary(summary: RunSummary): string {
  const rows = summary.tasks.map((t) => [t.id, t.status, formatDuration(t.durationMs), t.bytes ? formatBytes(t.bytes) : '-', t.reason]);
  const header = ['task', 'status', 'time', 'written', 'why'];
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]): string => cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]!))).join('  ');
  const counts = (['ran', 'cached', 'skipped', 'failed'] as const)
    .map((s) => `${summary.tasks.filter((t) => t.status === s).length} ${s}`)
    .join(', ');
  const verdict = summary.interrupted ? 'interrupted' : summary.ok ? 'done' : 'failed';
  return [line(header), ...rows.map(line), `${verdict} in ${formatDuration(summary.durationMs)}: ${counts}`].join('\n');
}

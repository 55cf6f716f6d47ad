// What a benchmark reports, and how results are printed and saved.
import { readFile, rename, writeFile } from 'node:fs/promises';
import { cpus, loadavg, release } from 'node:os';
import path from 'node:path';
import { execa } from 'execa';
import { formatBytes } from '../../lib/logging/format.ts';

/** Unit of a metric, for printing. */
export type Unit = 'ms' | 'bytes' | 'ratio' | 'count';

/** One measured number; `max` is the goal it must not exceed, when it has one. */
export interface Metric {
  readonly name: string;
  readonly value: number;
  readonly unit: Unit;
  readonly max?: number;
}

/** What one benchmark found. */
export interface BenchResult {
  readonly name: string;
  readonly title: string;
  /** How many measured runs each median is over. */
  readonly runs: number;
  readonly metrics: readonly Metric[];
  /** Facts a reader needs to trust the numbers (what was included, what was reused...). */
  readonly notes: readonly string[];
  /** Raw per-run numbers and breakdowns. */
  readonly details?: unknown;
}

/** The machine the numbers come from. */
export interface MachineInfo {
  readonly cpus: number;
  readonly cpuModel: string;
  readonly os: string;
  readonly kernel: string;
  readonly node: string;
  readonly filesystem: string;
  readonly loadAverageAtStart: readonly number[];
}

/** True when a metric meets its goal (or has none). */
export function meetsGoal(metric: Metric): boolean {
  return metric.max === undefined || metric.value <= metric.max;
}

/** Describes this machine: cores, Debian release, kernel, Node, file system type of `dir`. */
export async function machineInfo(dir: string): Promise<MachineInfo> {
  const debian = (await readFile('/etc/debian_version', 'utf8').catch(() => '?')).trim();
  const fs = await execa('df', ['--output=fstype', dir], { reject: false });
  return {
    cpus: cpus().length,
    cpuModel: cpus()[0]?.model ?? '?',
    os: `Debian ${debian}`,
    kernel: release(),
    node: process.version,
    filesystem: String(fs.stdout).split('\n')[1]?.trim() ?? '?',
    loadAverageAtStart: loadavg().map((l) => Math.round(l * 100) / 100),
  };
}

function formatValue(metric: Pick<Metric, 'unit'>, value: number): string {
  switch (metric.unit) {
    case 'ms':
      return value >= 10_000 ? `${(value / 1000).toFixed(1)} s` : `${Math.round(value)} ms`;
    case 'bytes':
      return formatBytes(value);
    case 'ratio':
      return `${value.toFixed(2)}x`;
    case 'count':
      return String(value);
  }
}

/** The results as a plain text table: benchmark, metric, value, goal, verdict. */
export function formatTable(results: readonly BenchResult[]): string {
  const rows: string[][] = [['benchmark', 'metric', 'value', 'goal', 'ok']];
  for (const result of results) {
    for (const metric of result.metrics) {
      rows.push([
        result.name,
        metric.name,
        formatValue(metric, metric.value),
        metric.max === undefined ? '' : `<= ${formatValue(metric, metric.max)}`,
        metric.max === undefined ? '' : meetsGoal(metric) ? 'yes' : 'MISS',
      ]);
    }
  }
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  return rows.map((r) => r.map((c, i) => c.padEnd(widths[i]!)).join('  ').trimEnd()).join('\n');
}

/** Merges this run's results into the JSON file (benchmarks not run keep their last results). */
export async function saveResults(file: string, machine: MachineInfo, results: readonly BenchResult[]): Promise<void> {
  let previous: { results?: Record<string, unknown> } = {};
  try {
    previous = JSON.parse(await readFile(file, 'utf8')) as typeof previous;
  } catch {
    // first run, or an unreadable file: start over
  }
  const merged: Record<string, unknown> = { ...(previous.results ?? {}) };
  const measuredAt = new Date().toISOString();
  for (const result of results) merged[result.name] = { ...result, measuredAt, machine };
  const temp = path.join(path.dirname(file), `.${path.basename(file)}.${process.pid}.tmp`);
  await writeFile(temp, `${JSON.stringify({ updatedAt: measuredAt, results: merged }, null, 2)}\n`);
  await rename(temp, file);
}

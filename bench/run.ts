// Runs the benchmarks, prints a table and merges the results into bench/results.json.
//   node --import tsx bench/run.ts                 # all: engine, checkpoint, image
//   node --import tsx bench/run.ts engine image    # some
// BENCH_RUNS=N overrides every benchmark's number of measured runs.
import path from 'node:path';
import { checkpointBench } from './checkpoint.ts';
import { engineBench } from './engine.ts';
import { imageBench } from './image.ts';
import { interruption, ROOT } from './lib/measure.ts';
import { formatTable, machineInfo, meetsGoal, saveResults, type BenchResult } from './lib/result.ts';

/** The benchmarks by name, in the order they run. */
const BENCHMARKS: Readonly<Record<string, () => Promise<BenchResult>>> = {
  engine: () => engineBench(),
  checkpoint: () => checkpointBench(),
  image: () => imageBench(),
};

const RESULTS_FILE = path.join(ROOT, 'bench/results.json');

function selected(argv: readonly string[]): string[] {
  const names = argv.length > 0 ? [...argv] : Object.keys(BENCHMARKS);
  const unknown = names.filter((n) => !(n in BENCHMARKS));
  if (unknown.length > 0) {
    process.stderr.write(`unknown benchmark(s): ${unknown.join(', ')}; known: ${Object.keys(BENCHMARKS).join(', ')}\n`);
    process.exit(2);
  }
  return names;
}

/** First Ctrl-C or SIGTERM: stop the running command and let each benchmark clean up (pools, mounts, daemon). */
function onSignal(name: NodeJS.Signals): void {
  if (interruption.signal.aborted) return;
  process.stderr.write(`\n${name}: stopping, cleaning up...\n`);
  process.exitCode = 130;
  interruption.abort();
}

async function main(): Promise<void> {
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  const names = selected(process.argv.slice(2));
  const machine = await machineInfo(ROOT);
  process.stdout.write(`machine: ${machine.cpus} x ${machine.cpuModel}, ${machine.os}, kernel ${machine.kernel}, Node ${machine.node}, ${machine.filesystem}, load ${machine.loadAverageAtStart.join(' ')}\n`);
  const results: BenchResult[] = [];
  for (const name of names) {
    const started = Date.now();
    process.stdout.write(`running ${name}...\n`);
    const result = await BENCHMARKS[name]!();
    results.push(result);
    process.stdout.write(`  ${name} done in ${((Date.now() - started) / 1000).toFixed(0)} s\n`);
    for (const note of result.notes) process.stdout.write(`  - ${note}\n`);
    // saved after each benchmark, so a later failure keeps the earlier numbers
    await saveResults(RESULTS_FILE, machine, [result]);
  }
  process.stdout.write(`\n${formatTable(results)}\n\nresults merged into ${path.relative(process.cwd(), RESULTS_FILE)}\n`);
  const missed = results.flatMap((r) => r.metrics.filter((m) => !meetsGoal(m)).map((m) => `${r.name}: ${m.name}`));
  if (missed.length > 0) process.stdout.write(`goals missed: ${missed.join('; ')}\n`);
}

try {
  await main();
} catch (error) {
  process.stderr.write(`bench: ${interruption.signal.aborted ? 'interrupted' : (error as Error).stack ?? String(error)}\n`);
  process.exitCode = interruption.signal.aborted ? 130 : 1;
}

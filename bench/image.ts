// Benchmark 3, image build: a 1 GiB root disk holding a ~256 MiB closure.
//  (a) a fresh staged build (empty cache) vs bench/image/straight-line.sh (same commands, no stages, no cache);
//  (b) the rebuild after a format change vs the two `qemu-img convert` runs alone;
//  (c) the cache's allocated bytes vs the allocated bytes of the final raw disks.
import { execa } from 'execa';
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { allocatedBytes } from '../lib/caching/free-space.ts';
import { nixOptions } from '../tasks/image/nix-options.ts';
import { duBytes, expectSuccess, interruption, median, ROOT, round, scratchDir, sync, timeCommand, type Timed } from './lib/measure.ts';
import type { BenchResult, Metric } from './lib/result.ts';
import { holdZfsDaemon, importedPools, scrub } from './lib/zfs-daemon.ts';

const POOL = 'bpool';
const FIRST_FORMAT = 'qcow2';
const SECOND_FORMAT = 'vdi';
const SCRIPT = path.join(ROOT, 'bench/image/straight-line.sh');
const SYSTEM = path.join(ROOT, 'bench/image/big-system.nix');
const GOALS = { fresh: 1.25, rebuild: 1.3, cache: 3 };

/** The stand-in system with the big closure: built (or found in the store) before anything is measured. */
async function buildSystem(): Promise<{ toplevel: string; closureBytes: number }> {
  const built = await execa('nix-build', [SYSTEM, '--no-out-link', ...nixOptions()]);
  const toplevel = String(built.stdout).trim().split('\n').at(-1)!;
  const closure = String((await execa('nix-store', ['--query', '--requisites', toplevel])).stdout).split('\n').filter(Boolean);
  const sizes = String((await execa('nix-store', ['--query', '--size', ...closure])).stdout).split('\n').filter(Boolean);
  return { toplevel, closureBytes: sizes.reduce((sum, n) => sum + Number(n), 0) };
}

/** The image config: the demo's dataset layout on pool bpool, 1 GiB root, 64 MiB boot. */
function imageConfig(toplevel: string, format: string): Record<string, unknown> {
  return {
    name: 'bench',
    format,
    bootSize: 64,
    rootSize: 1024,
    rootPoolName: POOL,
    datasets: {
      [`${POOL}/root`]: { mount: '/' },
      [`${POOL}/root/var`]: { mount: '/var' },
      [`${POOL}/nix`]: { mount: '/nix', properties: { atime: 'off' } },
      [`${POOL}/home`]: { mount: '/home', properties: { 'com.example:backup': 'yes' } },
    },
    includeChannel: false,
    system: { toplevel },
  };
}

/** What a staged build reported on --json. */
interface StagedRun {
  readonly wallMs: number;
  /** Time inside the scheduler (the summary's durationMs). */
  readonly scheduleMs: number;
  readonly statuses: Record<string, string>;
  readonly durations: Record<string, number>;
  readonly fingerprints: Record<string, string>;
}

async function stagedBuild(dir: string, format: string, toplevel: string): Promise<StagedRun> {
  const config = path.join(dir, 'config.json');
  await writeFile(config, JSON.stringify(imageConfig(toplevel, format)));
  // the package's command, as users run it: Taskfile.ts from its bundle (built by the warm-up)
  const args = [path.join(ROOT, 'bin/zfs-image.js'), 'build', '--json', '--config', config, '--cache-dir', path.join(dir, 'cache'), '--out', path.join(dir, 'out')];
  await sync();
  const timed = expectSuccess(await timeCommand(process.execPath, args, { env: { CI: '1' } }), `staged build (${format})`);
  return parseStaged(timed);
}

function parseStaged(timed: Timed): StagedRun {
  const statuses: Record<string, string> = {};
  const durations: Record<string, number> = {};
  const fingerprints: Record<string, string> = {};
  let scheduleMs = Number.NaN;
  for (const line of timed.stdout.split('\n').filter(Boolean)) {
    const event = JSON.parse(line) as { type: string; id?: string; status?: string; durationMs?: number; fingerprint?: string; ok?: boolean };
    if (event.type === 'summary') {
      if (!event.ok) throw new Error(`staged build failed:\n${timed.stdout.slice(-3000)}`);
      scheduleMs = (event as { durationMs: number }).durationMs;
    }
    if (event.type !== 'task' || !event.id || event.status === 'started') continue;
    statuses[event.id] = event.status!;
    durations[event.id] = event.durationMs ?? 0;
    if (event.fingerprint) fingerprints[event.id] = event.fingerprint;
  }
  return { wallMs: timed.wallMs, scheduleMs, statuses, durations, fingerprints };
}

/** The straight-line script's run: wall time and its `phase NAME MS` lines. */
async function scriptBuild(dir: string, format: string, toplevel: string): Promise<{ wallMs: number; phases: Record<string, number>; daemon: string }> {
  await sync();
  const timed = await timeCommand('bash', [SCRIPT, toplevel, dir, format, POOL]);
  if (timed.exitCode !== 0) {
    const log = await execa('tail', ['-40', path.join(dir, 'script.log')], { reject: false });
    throw new Error(`straight-line script exited ${timed.exitCode}:\n${timed.stdout}\n${String(log.stdout)}`);
  }
  const phases: Record<string, number> = {};
  let daemon = '';
  for (const line of timed.stdout.split('\n')) {
    const [kind, name, ms] = line.split(' ');
    if (kind === 'phase' && name) phases[name] = Number(ms);
    if (kind === 'daemon') daemon = line;
  }
  return { wallMs: timed.wallMs, phases, daemon };
}

/**
 * The baseline of (b): the two converts alone, one after the other, as the script runs them;
 * then, timed apart, the sha256 of both outputs (which image-info.json records).
 */
async function convertsAlone(dir: string, format: string): Promise<{ convertsMs: number; hashMs: number }> {
  await sync();
  let convertsMs = 0;
  let hashMs = 0;
  for (const [input, output] of [['boot.raw', `alone.boot.${format}`], ['root.work.raw', `alone.root.${format}`]] as const) {
    const timed = await timeCommand('qemu-img', ['convert', '-f', 'raw', '-O', format, path.join(dir, input), path.join(dir, output)]);
    convertsMs += expectSuccess(timed, `qemu-img convert ${input}`).wallMs;
  }
  for (const output of [`alone.boot.${format}`, `alone.root.${format}`]) {
    hashMs += expectSuccess(await timeCommand('openssl', ['dgst', '-sha256', path.join(dir, output)]), `sha256 ${output}`).wallMs;
  }
  return { convertsMs, hashMs };
}

/** Allocated bytes of the staged build's final raw disks (export-pool's root.raw, install:esp's boot.raw). */
async function finalRawBytes(cache: string, run: StagedRun): Promise<number> {
  const artifact = (id: string, name: string): string => path.join(cache, 'artifacts', run.fingerprints[id]!, name);
  return (await allocatedBytes(artifact('export-pool', 'root.raw'))) + (await allocatedBytes(artifact('install:esp', 'boot.raw')));
}

/** Everything one iteration measures. */
interface Iteration {
  readonly fresh: StagedRun;
  readonly script: { wallMs: number; phases: Record<string, number>; daemon: string };
  readonly rebuild: StagedRun;
  readonly convertsMs: number;
  readonly hashMs: number;
  readonly cacheAfterFresh: number;
  readonly cacheAfterRebuild: number;
  readonly finalRaw: number;
  readonly scriptRaw: number;
  readonly stagedRootOutput: number;
  readonly scriptRootOutput: number;
  /** Which side of (a) ran first in this iteration, and whether (b)'s rebuild ran before its converts. */
  readonly stagedFirst: boolean;
  readonly rebuildFirst: boolean;
}

const REBUILT = ['convert:boot', 'convert:root', 'post-vm'];

async function iteration(base: string, index: number, toplevel: string): Promise<Iteration> {
  await mkdir(base, { recursive: true });
  const stagedDir = path.join(base, `staged-${index}`);
  const scriptDir = path.join(base, `script-${index}`);
  await mkdir(stagedDir);
  const runStaged = () => stagedBuild(stagedDir, FIRST_FORMAT, toplevel);
  const runScript = () => scriptBuild(scriptDir, FIRST_FORMAT, toplevel);
  // alternate the order, so neither side always runs on the other's warm caches (and with an even
  // number of runs, each side runs second as often as the other: on this VM the second runs slower)
  const stagedFirst = index % 2 === 0;
  let fresh: StagedRun;
  let script: Awaited<ReturnType<typeof scriptBuild>>;
  if (stagedFirst) {
    fresh = await runStaged();
    script = await runScript();
  } else {
    script = await runScript();
    fresh = await runStaged();
  }
  const notRan = Object.entries(fresh.statuses).filter(([id, s]) => s !== 'ran' && id !== 'mount');
  if (notRan.length > 0) throw new Error(`fresh build did not run everything: ${JSON.stringify(notRan)}`);
  const cache = path.join(stagedDir, 'cache');
  const cacheAfterFresh = await duBytes(cache);
  // (b) alternates too: the rebuild works on the cache's disks, the converts alone on the script's
  const rebuildFirst = stagedFirst;
  let rebuild: StagedRun;
  let alone: { convertsMs: number; hashMs: number };
  if (rebuildFirst) {
    rebuild = await stagedBuild(stagedDir, SECOND_FORMAT, toplevel);
    alone = await convertsAlone(scriptDir, SECOND_FORMAT);
  } else {
    alone = await convertsAlone(scriptDir, SECOND_FORMAT);
    rebuild = await stagedBuild(stagedDir, SECOND_FORMAT, toplevel);
  }
  const ran = Object.entries(rebuild.statuses).filter(([, s]) => s === 'ran').map(([id]) => id).sort();
  if (JSON.stringify(ran) !== JSON.stringify(REBUILT)) throw new Error(`format change reran ${ran.join(', ')}, expected ${REBUILT.join(', ')}`);
  const { convertsMs, hashMs } = alone;
  const result: Iteration = {
    fresh,
    script,
    rebuild,
    convertsMs,
    hashMs,
    cacheAfterFresh,
    cacheAfterRebuild: await duBytes(cache),
    finalRaw: await finalRawBytes(cache, fresh),
    scriptRaw: (await allocatedBytes(path.join(scriptDir, 'boot.raw'))) + (await allocatedBytes(path.join(scriptDir, 'root.work.raw'))),
    stagedRootOutput: await allocatedBytes(path.join(stagedDir, 'out', `nixos.root.${FIRST_FORMAT}`)),
    scriptRootOutput: await allocatedBytes(path.join(scriptDir, `nixos.root.${FIRST_FORMAT}`)),
    stagedFirst,
    rebuildFirst,
  };
  for (const report of [...(await scrub(stagedDir, POOL)), ...(await scrub(scriptDir, POOL))]) console.error(`image bench: ${report}`);
  return result;
}

/**
 * One iteration, tried a second time if it fails: the zfs-fuse daemon is machine-wide, and a
 * daemon we reused may be stopped by the session that started it while we use it.
 */
async function iterationWithRetry(base: string, index: number, toplevel: string, ensureDaemon: () => Promise<void>): Promise<Iteration> {
  for (let attempt = 1; ; attempt++) {
    await ensureDaemon();
    try {
      return await iteration(path.join(base, `try-${attempt}`), index, toplevel);
    } catch (error) {
      for (const report of await scrub(path.join(base, `try-${attempt}`), POOL)) console.error(`image bench: ${report}`);
      if (attempt >= 2 || interruption.signal.aborted) throw error;
      console.error(`image bench: iteration ${index} failed, retrying once: ${(error as Error).message.split('\n')[0]}`);
    }
  }
}

/** Median per key over several records. */
function medianByKey(records: readonly Record<string, number>[]): Record<string, number> {
  const keys = [...new Set(records.flatMap((r) => Object.keys(r)))];
  return Object.fromEntries(keys.map((k) => [k, round(median(records.map((r) => r[k] ?? 0)))]));
}

function metrics(runs: readonly Iteration[], daemon: { startMs?: number; stopMs?: number }): Metric[] {
  const m = (pick: (r: Iteration) => number): number => median(runs.map(pick));
  const fresh = m((r) => r.fresh.wallMs);
  const script = m((r) => r.script.wallMs);
  const rebuild = m((r) => r.rebuild.wallMs);
  const converts = m((r) => r.convertsMs);
  const cache = m((r) => r.cacheAfterFresh);
  const raw = m((r) => r.finalRaw);
  const list: Metric[] = [
    { name: '(a) fresh staged build, wall', value: round(fresh), unit: 'ms' },
    { name: '(a) straight-line script, wall', value: round(script), unit: 'ms' },
    { name: '(a) staged / script', value: round(fresh / script, 2), unit: 'ratio', max: GOALS.fresh },
    { name: '(b) rebuild after format change, wall', value: round(rebuild), unit: 'ms' },
    { name: '(b) two qemu-img converts alone', value: round(converts), unit: 'ms' },
    { name: '(b) rebuild / converts', value: round(rebuild / converts, 2), unit: 'ratio', max: GOALS.rebuild },
    { name: '(b) sha256 of the two outputs alone (openssl)', value: round(m((r) => r.hashMs)), unit: 'ms' },
    { name: '(b) rebuild / (converts + sha256)', value: round(rebuild / m((r) => r.convertsMs + r.hashMs), 2), unit: 'ratio' },
    ...byOrder(runs),
    { name: '(c) cache after (a), du', value: cache, unit: 'bytes' },
    { name: '(c) final raw disks, allocated', value: raw, unit: 'bytes' },
    { name: '(c) cache / final raw disks', value: round(cache / raw, 2), unit: 'ratio', max: GOALS.cache },
    { name: '(c) cache after (b) / final raw disks', value: round(m((r) => r.cacheAfterRebuild) / raw, 2), unit: 'ratio' },
  ];
  if (daemon.startMs !== undefined && daemon.stopMs !== undefined) {
    const both = daemon.startMs + daemon.stopMs;
    list.push(
      { name: 'zfs-fuse start + stop (once)', value: round(both), unit: 'ms' },
      { name: '(a) staged / script, daemon start+stop added to both', value: round((fresh + both) / (script + both), 2), unit: 'ratio' },
    );
  }
  return list;
}

/**
 * The ratios of (a) and (b) split by which side ran first: the machine makes the second command of
 * an iteration slower, so these show how much of a ratio is order, not code.
 */
function byOrder(runs: readonly Iteration[]): Metric[] {
  const ratio = (list: readonly Iteration[], pick: (r: Iteration) => number): number => round(median(list.map(pick)), 2);
  const rows: Metric[] = [];
  for (const first of [true, false]) {
    const fresh = runs.filter((r) => r.stagedFirst === first);
    const rebuild = runs.filter((r) => r.rebuildFirst === first);
    const side = first ? 'first' : 'second';
    if (fresh.length > 0) rows.push({ name: `(a) staged / script, runs where staged ran ${side} (${fresh.length})`, value: ratio(fresh, (r) => r.fresh.wallMs / r.script.wallMs), unit: 'ratio' });
    if (rebuild.length > 0) rows.push({ name: `(b) rebuild / converts, runs where the rebuild ran ${side} (${rebuild.length})`, value: ratio(rebuild, (r) => r.rebuild.wallMs / r.convertsMs), unit: 'ratio' });
  }
  return rows;
}

/** Measured runs: even, so that each side of (a) and (b) runs second in half of them. */
export function evenRuns(requested: number): number {
  return Math.max(2, requested + (requested % 2));
}

/** Runs the image benchmark: one warm-up iteration, then `runs` measured ones (made even). */
export async function imageBench(requested = Number(process.env['BENCH_RUNS'] ?? 6)): Promise<BenchResult> {
  const runs = evenRuns(requested);
  const system = await buildSystem();
  if ((await importedPools()).includes(POOL)) throw new Error(`a pool named ${POOL} is already imported; export it first`);
  const base = await scratchDir('image');
  const daemon = await holdZfsDaemon();
  let stop: { stopMs?: number; note: string } = { note: '' };
  const measured: Iteration[] = [];
  try {
    for (let i = 0; i <= runs; i++) {
      const result = await iterationWithRetry(base, i, system.toplevel, daemon.ensure);
      if (i > 0) measured.push(result); // iteration 0 warms the caches
    }
  } finally {
    for (const report of await scrub(base, POOL)) console.error(`image bench: ${report}`);
    stop = await daemon.release();
  }
  const scriptDaemon = [...new Set(measured.map((r) => r.script.daemon))].join('; ');
  return {
    name: 'image',
    title: 'Image build, 1 GiB root disk with a ~256 MiB closure: staged vs straight-line script',
    runs,
    metrics: metrics(measured, { startMs: daemon.startMs, stopMs: stop.stopMs }),
    notes: [
      `system ${system.toplevel}, closure ${round(system.closureBytes / 2 ** 20, 1)} MiB (bench/image/big-system.nix)`,
      `(a) and (c): format ${FIRST_FORMAT}; (b): format changed to ${SECOND_FORMAT}; pool ${POOL}; one warm-up iteration, then ${runs} measured${runs === requested ? '' : ` (${requested} asked, made even)`}; staged and script alternate which runs first, and so do (b)'s rebuild and converts, so each side runs second in half the runs`,
      'zfs-fuse daemon start and stop are outside the measured time on both sides: the benchmark holds one daemon for all runs, so neither the staged build nor the script starts or stops it',
      `daemon: ${daemon.startMs === undefined ? 'already running (another user), reused' : `started by the benchmark in ${round(daemon.startMs)} ms`}; ${stop.note}; script saw: ${scriptDaemon}`,
      'both sides write what image-info.json records: qemu-img info and sha256 of both outputs (the staged build in its convert and post-vm tasks, the script in its post-vm phase with openssl)',
      'the staged build runs as users run it: node bin/zfs-image.js (Taskfile.ts from its esbuild bundle; the warm-up builds the bundle)',
      '(b) baseline runs the two converts one after the other; the staged build runs them concurrently (2 cores)',
    ],
    details: {
      closureBytes: system.closureBytes,
      stagedTaskMsMedian: medianByKey(measured.map((r) => r.fresh.durations)),
      stagedScheduleMsMedian: round(median(measured.map((r) => r.fresh.scheduleMs))),
      stagedOutsideScheduleMsMedian: round(median(measured.map((r) => r.fresh.wallMs - r.fresh.scheduleMs))),
      scriptPhaseMsMedian: medianByKey(measured.map((r) => r.script.phases)),
      rebuildTaskMsMedian: medianByKey(measured.map((r) => r.rebuild.durations)),
      rebuildScheduleMsMedian: round(median(measured.map((r) => r.rebuild.scheduleMs))),
      rebuildOutsideScheduleMsMedian: round(median(measured.map((r) => r.rebuild.wallMs - r.rebuild.scheduleMs))),
      perRun: measured.map((r) => ({
        freshMs: round(r.fresh.wallMs),
        scriptMs: round(r.script.wallMs),
        rebuildMs: round(r.rebuild.wallMs),
        convertsMs: round(r.convertsMs),
        hashMs: round(r.hashMs),
        cacheAfterFresh: r.cacheAfterFresh,
        cacheAfterRebuild: r.cacheAfterRebuild,
        stagedFinalRaw: r.finalRaw,
        scriptFinalRaw: r.scriptRaw,
        stagedRootOutput: r.stagedRootOutput,
        scriptRootOutput: r.scriptRootOutput,
        stagedFirst: r.stagedFirst,
        rebuildFirst: r.rebuildFirst,
      })),
    },
  };
}

// Benchmark 1, engine overhead: `build` of a fully cached chain of 10 value tasks, against
// `--help` of the same Taskfile (same runtime, same imports, no graph work) and of the
// project's Taskfile.ts. One profiled run of each says where the time goes.
import { mkdir, readdir, rm } from 'node:fs/promises';
import path from 'node:path';
import { mergeModules, summariseProfile, type ProfileSummary } from './lib/cpu-profile.ts';
import { expectSuccess, median, ROOT, round, scratchDir, timeCommand, type Timed } from './lib/measure.ts';
import type { BenchResult } from './lib/result.ts';

const CHAIN = path.join(ROOT, 'bench/fixtures/chain-taskfile.ts');
const EMPTY = path.join(ROOT, 'bench/fixtures/empty.ts');
const DEPS = path.join(ROOT, 'bench/fixtures/deps-only.ts');
const DEPS_ZOD = path.join(ROOT, 'bench/fixtures/deps-zod.ts');
const TASKFILE = path.join(ROOT, 'Taskfile.ts');
const GOAL = 1.5;
const ENV = { CI: '1' };

/** Functions whose first and last samples mark the phases of a run. */
const MARKERS = [
  'runTaskfile@lib/cli/main.ts',
  'loadGraph@lib/cli/main.ts',
  'lockCache@lib/caching/lock.ts',
  'sweepLeftovers@lib/caching/sweep.ts',
  'loadHashMemo@lib/caching/cache-store.ts',
  'schedule@lib/execution/scheduler.ts',
  'lookup@lib/caching/cache-store.ts',
  'buildManifest@lib/caching/fingerprint.ts',
];

const node = (script: string, args: readonly string[], extra: readonly string[] = []): [string, string[]] => [
  process.execPath,
  [...extra, '--import', 'tsx', script, ...args],
];

const BUNDLED_CHAIN = path.join(ROOT, 'bench/fixtures/bundled-chain.mjs');
const LAUNCHER = path.join(ROOT, 'bin/zfs-image.js');

/**
 * Interleaved runs with the shipped launcher (bin/taskfile-bundle.js, plain `node`, no tsx): the
 * chain's cached build and --help, and the project's `zfs-image --help`.
 */
async function bundledRuns(dir: string, cache: string, runs: number): Promise<{ build: Timed[]; help: Timed[]; projectHelp: Timed[] }> {
  const build: Timed[] = [];
  const help: Timed[] = [];
  const projectHelp: Timed[] = [];
  const env = { ...ENV, BUNDLE_DIR: path.join(dir, 'bundle') };
  const plain = (script: string, args: string[], what: string) =>
    timeCommand(process.execPath, [script, ...args], { env, cpu: true }).then((t) => expectSuccess(t, what));
  // the first run builds the chain's bundle; the project's is built by any earlier zfs-image command or here
  await plain(BUNDLED_CHAIN, ['build', '--cache-dir', cache], 'bundled warm-up');
  await plain(LAUNCHER, ['--help'], 'zfs-image warm-up');
  for (let i = 0; i < runs; i++) {
    const b = await plain(BUNDLED_CHAIN, ['build', '--cache-dir', cache], 'bundled build');
    if (!b.stdout.includes('0 ran, 10 cached')) throw new Error(`bundled build was not fully cached:\n${b.stdout}`);
    build.push(b);
    help.push(await plain(BUNDLED_CHAIN, ['--help'], 'bundled help'));
    projectHelp.push(await plain(LAUNCHER, ['--help'], 'zfs-image --help'));
  }
  return { build, help, projectHelp };
}

/** Steps of a start-up: bare Node, the tsx runtime, the engine's npm packages, zod. */
type StartupStep = 'node' | 'tsx' | 'deps' | 'depsZod';
const STARTUP_STEPS: readonly StartupStep[] = ['node', 'tsx', 'deps', 'depsZod'];

function startupStep(step: StartupStep): Promise<Timed> {
  if (step === 'node') return timeCommand(process.execPath, ['-e', '0'], { env: ENV, cpu: true });
  return run({ tsx: EMPTY, deps: DEPS, depsZod: DEPS_ZOD }[step], [], step);
}

async function run(script: string, args: readonly string[], what: string): Promise<Timed> {
  const [file, argv] = node(script, args);
  return expectSuccess(await timeCommand(file, argv, { env: ENV, cpu: true }), what);
}

/** Profiles one run (main thread and tsx's loader thread) and summarises it. */
async function profile(dir: string, script: string, args: readonly string[]): Promise<{ wallMs: number; threads: ProfileSummary[] }> {
  await mkdir(dir, { recursive: true });
  const [file, argv] = node(script, args, ['--cpu-prof', `--cpu-prof-dir=${dir}`, '--cpu-prof-interval', '250']);
  const timed = expectSuccess(await timeCommand(file, argv, { env: ENV }), `profiled ${args.join(' ')}`);
  const threads: ProfileSummary[] = [];
  for (const name of (await readdir(dir)).sort()) threads.push(await summariseProfile(path.join(dir, name), ROOT, MARKERS));
  return { wallMs: timed.wallMs, threads };
}

/** Where a profiled run spent its time: module loading before the CLI starts, then the CLI's phases. */
function profileReport(label: string, result: { wallMs: number; threads: ProfileSummary[] }) {
  const main = result.threads[0]!;
  const cliStart = main.spans.find((s) => s.fn.startsWith('runTaskfile'))?.firstMs ?? main.wallMs;
  return {
    label,
    processWallMs: round(result.wallMs),
    profiledMs: round(main.wallMs),
    beforeCliMs: round(cliStart),
    cliMs: round(main.wallMs - cliStart),
    spans: main.spans.map((s) => ({ fn: s.fn, fromMs: round(s.firstMs), toMs: round(s.lastMs), sampledMs: round(s.ms, 1) })),
    topModulesAllThreadsMs: mergeModules(result.threads)
      .slice(0, 15)
      .map((m) => ({ module: m.module, ms: round(m.ms) })),
  };
}

/** Runs the engine overhead benchmark with `runs` interleaved measurements of each command. */
export async function engineBench(runs = Number(process.env['BENCH_RUNS'] ?? 15)): Promise<BenchResult> {
  const dir = await scratchDir('engine');
  try {
    const cache = path.join(dir, 'cache');
    const buildArgs = ['build', '--cache-dir', cache];
    const first = await run(CHAIN, buildArgs, 'first build');
    if (!first.stdout.includes('10 ran')) throw new Error(`first build did not run 10 tasks:\n${first.stdout}`);
    // warm-up: tsx's transform cache and the OS's file cache
    await run(CHAIN, buildArgs, 'warm-up build');
    await run(CHAIN, ['--help'], 'warm-up help');
    await run(TASKFILE, ['--help'], 'warm-up Taskfile help');
    for (const step of STARTUP_STEPS) await startupStep(step);
    const build: Timed[] = [];
    const help: Timed[] = [];
    const projectHelp: Timed[] = [];
    const startup: Record<StartupStep, Timed[]> = { node: [], tsx: [], deps: [], depsZod: [] };
    for (let i = 0; i < runs; i++) {
      const b = await run(CHAIN, buildArgs, 'cached build');
      if (!b.stdout.includes('0 ran, 10 cached')) throw new Error(`cached build was not fully cached:\n${b.stdout}`);
      build.push(b);
      help.push(await run(CHAIN, ['--help'], 'help'));
      projectHelp.push(await run(TASKFILE, ['--help'], 'Taskfile help'));
      for (const step of STARTUP_STEPS) startup[step].push(await startupStep(step));
    }
    const wall = (xs: Timed[]): number => median(xs.map((x) => x.wallMs));
    const cpu = (xs: Timed[]): number => median(xs.map((x) => x.cpuMs ?? Number.NaN));
    const startupMs = Object.fromEntries(STARTUP_STEPS.map((step) => [step, round(wall(startup[step]))]));
    const bundled = await bundledRuns(dir, cache, runs);
    const bundledMetrics: BenchResult['metrics'] = [
      { name: 'bundled (bin/taskfile-bundle.js, no tsx): cached build', value: round(wall(bundled.build)), unit: 'ms' },
      { name: 'bundled: --help', value: round(wall(bundled.help)), unit: 'ms' },
      { name: 'bundled: build / --help', value: round(wall(bundled.build) / wall(bundled.help), 2), unit: 'ratio', max: GOAL },
      { name: 'zfs-image --help (Taskfile.ts bundled)', value: round(wall(bundled.projectHelp)), unit: 'ms' },
    ];
    const profiles = [
      profileReport('cached build', await profile(path.join(dir, 'prof-build'), CHAIN, buildArgs)),
      profileReport('--help', await profile(path.join(dir, 'prof-help'), CHAIN, ['--help'])),
    ];
    return {
      name: 'engine',
      title: 'Engine overhead: fully cached 10-task build vs --help',
      runs,
      metrics: [
        { name: 'cached build (10 tasks), wall', value: round(wall(build)), unit: 'ms' },
        { name: 'same Taskfile --help, wall', value: round(wall(help)), unit: 'ms' },
        { name: 'Taskfile.ts --help, wall', value: round(wall(projectHelp)), unit: 'ms' },
        { name: 'build / same Taskfile --help', value: round(wall(build) / wall(help), 2), unit: 'ratio', max: GOAL },
        { name: 'build / Taskfile.ts --help', value: round(wall(build) / wall(projectHelp), 2), unit: 'ratio', max: GOAL },
        { name: 'cached build, CPU (user+sys)', value: round(cpu(build)), unit: 'ms' },
        { name: 'same Taskfile --help, CPU', value: round(cpu(help)), unit: 'ms' },
        { name: 'CPU ratio build / --help', value: round(cpu(build) / cpu(help), 2), unit: 'ratio' },
        ...bundledMetrics,
      ],
      notes: [
        'bench/fixtures/chain-taskfile.ts: 10 chained value tasks, cache filled before measuring; CI=1 (line reporter)',
        'runs interleaved (build, help, Taskfile.ts help, start-up steps) so load from other processes hits all alike',
        'bundled rows: the same chain Taskfile run as bin/zfs-image.js runs Taskfile.ts (bench/fixtures/bundled-chain.mjs: the esbuild bundle, stamp checked at every start, plain node)',
      ],
      details: {
        wallMs: { build: build.map((t) => round(t.wallMs)), help: help.map((t) => round(t.wallMs)), projectHelp: projectHelp.map((t) => round(t.wallMs)) },
        cpuMs: { build: build.map((t) => round(t.cpuMs ?? 0)), help: help.map((t) => round(t.cpuMs ?? 0)) },
        bundledWallMs: { build: bundled.build.map((t) => round(t.wallMs)), help: bundled.help.map((t) => round(t.wallMs)), projectHelp: bundled.projectHelp.map((t) => round(t.wallMs)) },
        startupMedianMs: { ...startupMs, chainHelp: round(wall(help)), chainBuild: round(wall(build)), taskfileHelp: round(wall(projectHelp)) },
        startupLegend: {
          node: 'node -e 0 (no tsx)',
          tsx: 'node --import tsx bench/fixtures/empty.ts',
          deps: 'tsx + cacache, execa, listr2 (bench/fixtures/deps-only.ts)',
          depsZod: 'deps + zod (bench/fixtures/deps-zod.ts)',
        },
        profiles,
      },
    };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

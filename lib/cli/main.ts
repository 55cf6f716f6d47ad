// first: under Deno, stops with a clear message when permissions are missing (see the module)
import './deno-permissions.ts';
import { stat } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import path from 'node:path';
import { openCache, type CacheStore } from '../caching/cache-store.ts';
import type { Sweeper } from '../caching/sweep.ts';
import { ConfigError } from '../engine/config-error.ts';
import { describeGraphError } from '../engine/failure.ts';
import { buildGraph, resolveTargets, runnableTargets, type Graph } from '../engine/graph.ts';
import type { Plugin, PluginEnvironment } from '../engine/task.ts';
import { schedule } from '../execution/scheduler.ts';
import { searchPath } from '../execution/which.ts';
import type { Reporter, RunSummary } from '../logging/events.ts';
import { createJsonReporter } from '../logging/json-reporter.ts';
import { createLineReporter } from '../logging/line-reporter.ts';
import { helpText, parseCli, type CliArgs } from './args.ts';
import { interruptMessage, interruptReason, type StopSignal } from './interrupt.ts';
import { logs as printLogs } from './commands/logs.ts';
import { maintain } from './commands/maintain.ts';
import { explain, plan, planStates } from './commands/plan.ts';
import { openShell } from './commands/shell.ts';
import { selection, withLock, type CliIo } from './common.ts';
import { configBaseDir, readConfigFile } from './config-file.ts';
import { checkFolderOptions } from './folder-options.ts';
import { checkRequirements, formatDoctor } from './doctor.ts';
import { toDot, toMermaid } from './graph-format.ts';

export type { CliIo } from './common.ts';

/** What a Taskfile hands the runner. */
export interface TaskfileOptions {
  /** Task sets, applied in order; later plugins may depend on earlier plugins' tasks. */
  readonly plugins: readonly Plugin[];
  /** Used when no `--config` is given (the embedded demo config). */
  readonly defaultConfig?: unknown;
  /** Program name shown in `--help`. */
  readonly program?: string;
  /** Release what dead runs left in working folders (pools, mounts). */
  readonly sweepers?: readonly Sweeper[];
}

const defaultIo = (): CliIo => ({
  stdout: (t) => void process.stdout.write(t),
  stderr: (t) => void process.stderr.write(t),
  // a pseudo-terminal nobody gave a size (`script -c` in a pipeline) reports 0 columns: listr2 would
  // draw one character per line there, so it gets the plain line output
  isTty: Boolean(process.stdout.isTTY) && (process.stdout.columns ?? 0) > 0,
  env: process.env,
});

/** Runs a Taskfile's command line and exits with its status. */
export async function runTaskfile(options: TaskfileOptions, argv: readonly string[] = process.argv.slice(2)): Promise<never> {
  const controller = new AbortController();
  const parsed = parseCli(argv, 1);
  const command = parsed.ok ? parsed.value.command : undefined;
  const onSignal = (name: StopSignal): void => {
    if (controller.signal.aborted) return;
    const message = interruptMessage(command, name);
    if (message) process.stderr.write(`\n${message}\n`);
    controller.abort(interruptReason(name));
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  // A closed terminal stops the build like Ctrl-C does: mounts and pools are released first.
  process.on('SIGHUP', onSignal);
  // A reader that goes away (`| head`) must not crash a build halfway: output stops, the build goes on.
  for (const stream of [process.stdout, process.stderr]) stream.on('error', ignoreClosedOutput);
  // Disk and ZFS tools live in sbin, which a non-login root shell or sudo may leave off PATH.
  process.env['PATH'] = searchPath();
  const code = await main(options, argv, defaultIo(), controller.signal);
  // In `shell`, Ctrl-C belongs to the interactive command, whose own status is the answer; `build`
  // and `run` report an interruption themselves (a signal after the last task cut nothing short).
  const ownStatus = command === 'shell' || command === 'build' || command === 'run';
  // the contract: an interrupted command exits 1, whichever signal stopped it
  process.exit(ownStatus ? code : controller.signal.aborted ? 1 : code);
}

function ignoreClosedOutput(error: NodeJS.ErrnoException): void {
  if (error.code === 'EPIPE' || error.code === 'EIO' || error.code === 'ERR_STREAM_DESTROYED') return;
  throw error;
}

/** The command line as a function: returns the exit status. */
export async function main(options: TaskfileOptions, argv: readonly string[], io: CliIo, signal: AbortSignal): Promise<number> {
  // bin/zfs-image.js names itself, so --help shows the command the user typed
  const program = io.env['TASKFILE_PROGRAM'] ?? options.program ?? 'Taskfile.ts';
  // + 2, as ninja does: tasks mostly wait on other programs (zfs, nix, qemu-img), and on a
  // 2-CPU machine the short boot-disk branch would otherwise take the critical path's slot
  const parsed = parseCli(argv, availableParallelism() + 2);
  if (!parsed.ok) {
    io.stderr(`error: ${parsed.error}\nRun \`${program} --help\` for usage.\n`);
    return 2;
  }
  const args = parsed.value;
  if (args.command === 'help') {
    io.stdout(helpText(program));
    return 0;
  }
  try {
    return await dispatch(options, args, io, signal);
  } catch (error) {
    if (error instanceof ConfigError) {
      io.stderr(`${error.problems.map((p) => `error: ${p}`).join('\n')}\n`);
      return 2;
    }
    // anything else (a cache folder that cannot be written, say) is one line like every other
    // error; the stack only with --verbose
    io.stderr(`error: ${error instanceof Error ? error.message : String(error)}\n`);
    if (args.verbose && error instanceof Error && error.stack) io.stderr(`${error.stack}\n`);
    return 1;
  }
}

async function loadGraph(options: TaskfileOptions, args: CliArgs): Promise<{ graph: Graph; env: PluginEnvironment }> {
  const config = args.config ? await readConfigFile(args.config) : options.defaultConfig;
  const env: PluginEnvironment = {
    config,
    configDir: configBaseDir(args.config),
    configFile: args.config ? path.resolve(args.config) : undefined,
    outDir: path.resolve(args.out),
    cacheDir: path.resolve(args.cacheDir),
    willRun: args.command === 'build' || args.command === 'run',
  };
  const nodes = [];
  for (const plugin of options.plugins) nodes.push(...(await plugin(env)));
  const graph = buildGraph(nodes);
  if (!graph.ok) throw new ConfigError([describeGraphError(graph.error)]);
  return { graph: graph.value, env };
}

async function pickReporter(args: CliArgs, io: CliIo): Promise<Reporter> {
  if (args.json) return createJsonReporter(io.stdout);
  if (io.env.CI || !io.isTty) return createLineReporter({ write: io.stdout, verbose: args.verbose });
  // loaded only for a terminal: listr2 costs about 25 ms of start-up that CI and --json runs skip
  const { createListrReporter } = await import('../logging/listr-reporter.ts');
  return createListrReporter({ verbose: args.verbose });
}

async function dispatch(options: TaskfileOptions, args: CliArgs, io: CliIo, signal: AbortSignal): Promise<number> {
  const requirements = options.plugins.flatMap((p) => p.requirements ?? []);
  if (args.command === 'doctor' || args.command === 'build' || args.command === 'run') {
    const statuses = await checkRequirements(requirements, args.command === 'doctor');
    const missing = statuses.some((s) => !s.path);
    if (args.command === 'doctor') {
      io.stdout(formatDoctor(statuses));
      return missing ? 1 : 0;
    }
    if (missing) {
      // Before anything is created: the same report as `doctor`, with versions of what is there.
      io.stderr(`error: tools the build needs are missing\n${formatDoctor(await checkRequirements(requirements))}`);
      return 2;
    }
  }
  await checkFolderOptions(args);
  const store = openCache(args.cacheDir);
  const sweepers = [...(options.sweepers ?? []), ...options.plugins.flatMap((p) => p.sweepers ?? [])];
  // These work on the cache alone: a broken config or a missing ZFS must not stop them.
  if (args.command === 'clean' || args.command === 'gc' || args.command === 'verify') {
    // a mistyped --cache-dir must not leave an empty cache folder behind
    if ((await stat(store.dir).catch(() => undefined)) === undefined) {
      io.stdout(`${args.command}: no cache folder at ${store.dir}; nothing to do\n`);
      return 0;
    }
    return withLock(store, args, io, signal, sweepers, () => maintain(store, args, io, signal));
  }
  const { graph } = await loadGraph(options, args);
  switch (args.command) {
    case 'plan':
      return plan(graph, store, args, io, signal);
    case 'explain':
      return explain(graph, store, args, io, signal);
    case 'graph': {
      const states = await planStates(graph, store, graph.order, signal);
      io.stdout(args.format === 'dot' ? toDot(graph, states) : toMermaid(graph, states));
      return 0;
    }
    case 'logs':
      return printLogs(graph, store, args, io);
    case 'shell': {
      const provider = options.plugins.map((p) => p.shell).find(Boolean);
      if (!provider) throw new ConfigError(['shell: no plugin of this Taskfile can open a stage']);
      return openShell(provider, graph, store, args, io, signal, sweepers);
    }
    default: {
      // Checked before the lock: a typo in a task name must not create the cache folder.
      const ids = selection(graph, args.targets, { resourcesAsUsers: true });
      return withLock(store, args, io, signal, sweepers, () => runGraph(graph, ids, store, args, io, signal));
    }
  }
}

async function runGraph(graph: Graph, ids: readonly string[], store: CacheStore, args: CliArgs, io: CliIo, signal: AbortSignal): Promise<number> {
  const forced = args.command === 'run' && args.force ? resolveTargets(graph, args.targets) : undefined;
  const force = new Set(forced?.ok ? runnableTargets(graph, forced.value) : []);
  const reporter = await pickReporter(args, io);
  const memo = await store.loadHashMemo();
  const summary = await schedule({ graph, ids, store, reporter, concurrency: args.concurrency, force, signal, memo });
  await memo.save();
  await reporter.end(summary);
  return exitStatus(summary);
}

// an interrupted run is not ok: it exits 1 too
function exitStatus(summary: RunSummary): number {
  return summary.ok ? 0 : 1;
}


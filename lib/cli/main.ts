import cacache from 'cacache';
import { execa } from 'execa';
import { availableParallelism } from 'node:os';
import { mkdir, mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import path from 'node:path';
import { openCache, type CacheStore } from '../caching/cache-store.ts';
import { diffManifests, fingerprintOf, type Manifest } from '../caching/fingerprint.ts';
import { hashPath } from '../caching/file-hash.ts';
import { collectGarbage } from '../caching/gc.ts';
import { lockCache } from '../caching/lock.ts';
import { mountsUnder, sweepLeftovers, type Sweeper } from '../caching/sweep.ts';
import { ConfigError } from '../engine/config-error.ts';
import { describeGraphError } from '../engine/failure.ts';
import { buildGraph, closure, resolveTargets, type Graph } from '../engine/graph.ts';
import type { DependencyOutputs, Plugin, PluginEnvironment } from '../engine/task.ts';
import type { ShellProvider, ShellSession } from '../engine/shell.ts';
import { createExec } from '../execution/exec.ts';
import { completeTransactions, schedule } from '../execution/scheduler.ts';
import type { Reporter, RunSummary } from '../logging/events.ts';
import { formatBytes } from '../logging/format.ts';
import { createJsonReporter } from '../logging/json-reporter.ts';
import { createLineReporter } from '../logging/line-reporter.ts';
import { createListrReporter } from '../logging/listr-reporter.ts';
import { helpText, parseCli, type CliArgs } from './args.ts';
import { configBaseDir, readConfigFile } from './config-file.ts';
import { toDot, toMermaid, type GraphState } from './graph-format.ts';
import { checkRequirements, formatDoctor } from './doctor.ts';

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

/** Where the runner writes; tests pass their own. */
export interface CliIo {
  readonly stdout: (text: string) => void;
  readonly stderr: (text: string) => void;
  readonly isTty: boolean;
  readonly env: Readonly<Record<string, string | undefined>>;
}

const defaultIo = (): CliIo => ({
  stdout: (t) => void process.stdout.write(t),
  stderr: (t) => void process.stderr.write(t),
  isTty: Boolean(process.stdout.isTTY),
  env: process.env,
});

/** Runs a Taskfile's command line and exits with its status. */
export async function runTaskfile(options: TaskfileOptions, argv: readonly string[] = process.argv.slice(2)): Promise<never> {
  const controller = new AbortController();
  let signalExit = 0;
  const onSignal = (name: NodeJS.Signals): void => {
    if (controller.signal.aborted) return;
    signalExit = name === 'SIGINT' ? 130 : 1;
    process.stderr.write(`\n${name}: stopping running tasks, cleaning up (nothing partial is published)...\n`);
    controller.abort();
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  // Disk and ZFS tools live in sbin, which a non-login root shell or sudo may leave off PATH.
  const dirs = (process.env['PATH'] ?? '').split(':');
  process.env['PATH'] = [...dirs, ...['/usr/local/sbin', '/usr/sbin', '/sbin'].filter((d) => !dirs.includes(d))].join(':');
  const code = await main(options, argv, defaultIo(), controller.signal);
  process.exit(signalExit || code);
}

/** The command line as a function: returns the exit status. */
export async function main(options: TaskfileOptions, argv: readonly string[], io: CliIo, signal: AbortSignal): Promise<number> {
  const program = options.program ?? 'Taskfile.ts';
  const parsed = parseCli(argv, availableParallelism());
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
    throw error;
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
  };
  const nodes = [];
  for (const plugin of options.plugins) nodes.push(...(await plugin(env)));
  const graph = buildGraph(nodes);
  if (!graph.ok) throw new ConfigError([describeGraphError(graph.error)]);
  return { graph: graph.value, env };
}

function selection(graph: Graph, targets: readonly string[]): string[] {
  const ids = resolveTargets(graph, targets);
  if (!ids.ok) throw new ConfigError([describeGraphError(ids.error)]);
  return completeTransactions(graph, closure(graph, ids.value));
}

function pickReporter(args: CliArgs, io: CliIo): Reporter {
  if (args.json) return createJsonReporter(io.stdout);
  if (io.env.CI || !io.isTty) return createLineReporter({ write: io.stdout, verbose: args.verbose });
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
  const store = openCache(args.cacheDir);
  const sweepers = [...(options.sweepers ?? []), ...options.plugins.flatMap((p) => p.sweepers ?? [])];
  // These work on the cache alone: a broken config or a missing ZFS must not stop them.
  if (args.command === 'clean' || args.command === 'gc' || args.command === 'verify') {
    return withLock(store, args, io, signal, sweepers, () => maintain(store, args, io));
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
      const ids = selection(graph, args.targets);
      return withLock(store, args, io, signal, sweepers, () => runGraph(graph, ids, store, args, io, signal));
    }
  }
}

/** Commands that write the cache hold its lock and first sweep dead runs' leftovers. */
async function withLock(
  store: CacheStore,
  args: CliArgs,
  io: CliIo,
  signal: AbortSignal,
  sweepers: readonly Sweeper[],
  body: () => Promise<number>,
): Promise<number> {
  const say = (message: string): void => (args.json ? io.stdout(`${JSON.stringify({ type: 'notice', level: 'info', message })}\n`) : io.stderr(`${message}\n`));
  const lock = await lockCache(store.dir, { command: args.command, noWait: args.noWait, signal, notify: say });
  if (!lock.ok) {
    if (lock.error.reason === 'aborted') return 130;
    io.stderr(`error: ${store.dir} is in use by pid ${lock.error.owner.pid} (${lock.error.owner.command} since ${lock.error.owner.since}); rerun without --no-wait to wait for it\n`);
    return 1;
  }
  try {
    for (const line of await sweepLeftovers([store.stagingDir, store.workDir], sweepers)) say(`cleanup: ${line}`);
    return await body();
  } finally {
    await lock.value.release();
  }
}

async function maintain(store: CacheStore, args: CliArgs, io: CliIo): Promise<number> {
  switch (args.command) {
    case 'clean': {
      const names = await readdir(store.dir).catch(() => [] as string[]);
      for (const name of names) if (name !== '.gitignore' && name !== 'lock') await rm(path.join(store.dir, name), { recursive: true, force: true });
      io.stdout(`cleaned ${store.dir}\n`);
      return 0;
    }
    case 'gc': {
      const report = await collectGarbage(store, args.maxSize!);
      io.stdout(`gc: ${formatBytes(report.before)} -> ${formatBytes(report.after)}; evicted ${report.evicted.length} entr${report.evicted.length === 1 ? 'y' : 'ies'}${report.orphans ? `, ${report.orphans} orphan folder(s)` : ''}\n`);
      for (const e of report.evicted) io.stdout(`  evicted ${e.taskId} ${e.fingerprint.slice(0, 12)} (${formatBytes(e.bytes)})\n`);
      return 0;
    }
    default:
      return verify(store, io);
  }
}

async function runGraph(graph: Graph, ids: readonly string[], store: CacheStore, args: CliArgs, io: CliIo, signal: AbortSignal): Promise<number> {
  const forced = args.command === 'run' && args.force ? resolveTargets(graph, args.targets) : undefined;
  const force = new Set(forced?.ok ? forced.value : []);
  const reporter = pickReporter(args, io);
  const memo = await store.loadHashMemo();
  const summary = await schedule({ graph, ids, store, reporter, concurrency: args.concurrency, force, signal, memo });
  await memo.save();
  await reporter.end(summary);
  return exitStatus(summary);
}

function exitStatus(summary: RunSummary): number {
  if (summary.interrupted) return 130;
  return summary.ok ? 0 : 1;
}

/** Runs the scheduler in plan mode, collecting each node's state and manifest. */
async function dryRun(graph: Graph, store: CacheStore, ids: readonly string[], signal: AbortSignal) {
  const manifests = new Map<string, Manifest>();
  const silent: Reporter = { begin() {}, event() {}, end() {} };
  const summary = await schedule({
    graph,
    ids,
    store,
    reporter: silent,
    concurrency: 1,
    signal,
    dryRun: true,
    onManifest: (id, manifest) => manifests.set(id, manifest),
  });
  return { summary, manifests };
}

async function planStates(graph: Graph, store: CacheStore, ids: readonly string[], signal: AbortSignal): Promise<Map<string, GraphState>> {
  const { summary } = await dryRun(graph, store, ids, signal);
  return new Map(summary.tasks.map((t) => [t.id, t.status === 'ran' ? 'stale' : t.status]));
}

async function plan(graph: Graph, store: CacheStore, args: CliArgs, io: CliIo, signal: AbortSignal): Promise<number> {
  const { summary } = await dryRun(graph, store, selection(graph, args.targets), signal);
  if (args.json) {
    for (const t of summary.tasks) io.stdout(`${JSON.stringify({ type: 'plan', id: t.id, stage: t.stage, action: t.status === 'ran' ? 'run' : t.status === 'cached' ? 'fresh' : t.status, reason: t.reason, fingerprint: t.fingerprint })}\n`);
    return 0;
  }
  const width = Math.max(...summary.tasks.map((t) => t.id.length));
  for (const t of summary.tasks) {
    const action = t.status === 'ran' ? 'run' : t.status === 'cached' ? 'fresh' : t.status;
    io.stdout(`${t.id.padEnd(width)}  ${action.padEnd(7)}  ${t.reason}\n`);
  }
  const toRun = summary.tasks.filter((t) => t.status === 'ran').length;
  io.stdout(`${toRun} of ${summary.tasks.length} task(s) would run\n`);
  return 0;
}

async function explain(graph: Graph, store: CacheStore, args: CliArgs, io: CliIo, signal: AbortSignal): Promise<number> {
  const ids = resolveTargets(graph, args.targets);
  if (!ids.ok) throw new ConfigError([describeGraphError(ids.error)]);
  const { summary, manifests } = await dryRun(graph, store, selection(graph, args.targets), signal);
  for (const id of ids.value) {
    const row = summary.tasks.find((t) => t.id === id)!;
    const manifest = manifests.get(id);
    const last = await store.lastEntry(id);
    if (!manifest) {
      io.stdout(`${id}: ${row.reason}\n`);
      continue;
    }
    if (!last) {
      io.stdout(`${id}: never built in ${store.dir}\n`);
      continue;
    }
    const changes = diffManifests(last.manifest, manifest);
    if (changes.length === 0) {
      io.stdout(`${id}: ${row.status === 'cached' ? 'fresh' : row.reason}; nothing differs from the last cached run (${last.publishedAt})\n`);
      continue;
    }
    io.stdout(`${id}: ${changes.length} field(s) differ from the last cached run (${last.publishedAt}):\n`);
    for (const c of changes) io.stdout(`  ${c.field}: ${c.before ?? '(absent)'} -> ${c.after ?? '(absent)'}\n`);
  }
  return 0;
}

async function printLogs(graph: Graph, store: CacheStore, args: CliArgs, io: CliIo): Promise<number> {
  const ids = resolveTargets(graph, args.targets);
  if (!ids.ok) throw new ConfigError([describeGraphError(ids.error)]);
  let found = false;
  for (const id of ids.value) {
    const folder = path.join(store.logsDir, id.replace(/[^A-Za-z0-9_.-]+/g, '_'));
    const names = (await readdir(folder).catch(() => [] as string[])).filter((n) => n.endsWith('.log')).sort();
    const last = names.at(-1);
    if (!last) {
      io.stderr(`${id}: no log yet (it has not run with this cache folder)\n`);
      continue;
    }
    found = true;
    io.stdout(`==> ${path.join(folder, last)} <==\n${await readFile(path.join(folder, last), 'utf8')}`);
  }
  return found ? 0 : 1;
}

/**
 * Rehashes everything: cacache checks its own content (index, manifests, values); file and folder
 * artifacts are compared with the hash taken at publish; disks with the hash the first verify
 * recorded (a baseline, since hashing every disk at publish would slow every build).
 */
async function verify(store: CacheStore, io: CliIo): Promise<number> {
  const stats = await cacache.verify(store.indexDir).catch((error: Error) => ({ error }));
  if ('error' in stats) io.stdout(`index: could not verify (${stats.error.message})\n`);
  else io.stdout(`index: ${stats.verifiedContent} content item(s) rehashed, ${stats.badContentCount} bad removed\n`);
  let damaged = 0;
  let good = 0;
  const listing = await cacache.ls(store.indexDir).catch(() => ({}) as Record<string, { metadata?: unknown }>);
  for (const key of Object.keys(listing)) {
    if (!key.startsWith('entry/')) continue;
    const fingerprint = key.slice('entry/'.length);
    const found = await store.lookup(fingerprint);
    if (!found.ok) {
      damaged += 1;
      io.stdout(`damaged: ${fingerprint.slice(0, 12)}: ${found.error.reason === 'damaged' ? found.error.detail : 'index record lost'} (a miss: the next build redoes it)\n`);
      continue;
    }
    const entry = found.value;
    const baselineKey = `verify/${fingerprint}`;
    const baseline = await cacache.get(store.indexDir, baselineKey).then((d) => JSON.parse(d.data.toString('utf8')) as Record<string, string>, () => ({}) as Record<string, string>);
    let recorded = false;
    const problems: string[] = [];
    for (const [name, artifact] of Object.entries(entry.artifacts)) {
      const hash = await hashPath(store.artifactPath(fingerprint, name));
      const expected = artifact.sha256 ?? baseline[name];
      if (expected === undefined) {
        baseline[name] = hash;
        recorded = true;
      } else if (expected !== hash) problems.push(`${name} content changed since ${artifact.sha256 ? 'publish' : 'the first verify'}`);
    }
    if (recorded) await cacache.put(store.indexDir, baselineKey, JSON.stringify(baseline));
    if (problems.length > 0) {
      damaged += 1;
      await store.evict(fingerprint);
      io.stdout(`damaged: ${entry.taskId} ${fingerprint.slice(0, 12)}: ${problems.join('; ')}; evicted (the next build redoes it)\n`);
    } else good += 1;
  }
  io.stdout(`${good} entr${good === 1 ? 'y' : 'ies'} intact, ${damaged} damaged\n`);
  return damaged === 0 ? 0 : 1;
}

/** `shell <stage>`: copies of the stage's fresh checkpoints opened by the plugin, a shell or one command, then everything undone. */
async function openShell(
  provider: ShellProvider,
  graph: Graph,
  store: CacheStore,
  args: CliArgs,
  io: CliIo,
  signal: AbortSignal,
  sweepers: readonly Sweeper[],
): Promise<number> {
  const stage = args.targets[0]!;
  const ids = selection(graph, [stage]);
  const { summary, manifests } = await dryRun(graph, store, ids, signal);
  const stale = summary.tasks.filter((t) => t.status !== 'cached' && !graph.nodes.get(t.id)!.kind);
  if (stale.length > 0) {
    io.stderr(`error: ${stale.map((t) => `${t.id} (${t.reason})`).join(', ')} not fresh in the cache; run \`build ${stage}\` first\n`);
    return 1;
  }
  const outputs: Record<string, DependencyOutputs> = {};
  for (const [id, manifest] of manifests) {
    const found = await store.lookup(fingerprintOf(manifest));
    if (!found.ok) continue;
    const paths: Record<string, string> = {};
    for (const name of Object.keys(found.value.artifacts)) paths[name] = store.artifactPath(found.value.fingerprint, name);
    outputs[id] = { values: found.value.values, paths };
  }
  let session: ShellSession | undefined;
  let workDir = '';
  // The copies are taken under the lock (no gc meanwhile); the shell itself does not hold it.
  const prepared = await withLock(store, args, io, signal, sweepers, async () => {
    await mkdir(store.workDir, { recursive: true });
    workDir = await mkdtemp(path.join(store.workDir, `${process.pid}.shell.`));
    session = await provider({ stage, outputs, workDir, exec: createExec({ onLine: (l) => io.stderr(`  ${l}\n`) }), log: (l) => io.stderr(`${l}\n`) });
    return 0;
  }).catch(async (error: Error) => {
    io.stderr(`error: could not open ${stage}: ${error.message}\n`);
    return 1;
  });
  if (prepared !== 0 || !session) {
    if (workDir && (await mountsUnder(workDir)).length === 0) await rm(workDir, { recursive: true, force: true });
    return prepared || 1;
  }
  const opened: ShellSession = session;
  try {
    for (const note of opened.notes) io.stderr(`${note}\n`);
    const [command, ...rest] = args.rest.length > 0 ? args.rest : [process.env['SHELL'] || 'bash'];
    const child = await execa(command!, rest, { cwd: opened.cwd, env: opened.env, stdio: 'inherit', reject: false });
    return child.exitCode ?? 1;
  } finally {
    await opened.release();
    if ((await mountsUnder(workDir)).length === 0) await rm(workDir, { recursive: true, force: true });
    else io.stderr(`warning: ${workDir} is still mounted; the next build cleans it up\n`);
  }
}

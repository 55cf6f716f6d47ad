import { execa } from 'execa';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { constants as osConstants } from 'node:os';
import path from 'node:path';
import { entryOutputs, type CacheStore } from '../../caching/cache-store.ts';
import { fingerprintOf } from '../../caching/fingerprint.ts';
import type { Sweeper } from '../../caching/sweep.ts';
import { mountsUnder } from '../../execution/mount-table.ts';
import { processesUsing, processName, processTree, signalProcess } from '../../execution/processes.ts';
import type { Graph } from '../../engine/graph.ts';
import type { ShellProvider, ShellSession } from '../../engine/shell.ts';
import { isResource, type DependencyOutputs } from '../../engine/task.ts';
import { createExec } from '../../execution/exec.ts';
import type { CliArgs } from '../args.ts';
import { dryRun, selection, withLock, type CliIo } from '../common.ts';
import { interruptSignal } from '../interrupt.ts';

/**
 * The command's own processes (it and everything below it) working in the opened copy: the mounted
 * root, else the folder the command ran in. Another terminal's shell that happens to be in the copy
 * is not the command's, and is never signalled; nor is the ZFS daemon, which holds the copied disk.
 */
async function jobsInCopy(opened: ShellSession, commandPid: number): Promise<number[]> {
  const [using, tree] = await Promise.all([processesUsing(copyFolder(opened)), processTree(commandPid)]);
  const pids = using.filter((pid) => tree.has(pid));
  const names = await Promise.all(pids.map(processName));
  return pids.filter((_, i) => names[i] !== 'zfs-fuse');
}

/** Where the opened copy is: what keeps it busy works in there. */
function copyFolder(opened: ShellSession): string {
  return opened.env['IMAGE_ROOT'] ?? opened.cwd;
}

/** Waits up to 5 s for the processes a passed-on signal reached to leave the copy, so release can unmount it. */
async function settle(opened: ShellSession, signalled: ReadonlySet<number>): Promise<void> {
  const deadline = Date.now() + 5_000;
  while (Date.now() < deadline && (await processesUsing(copyFolder(opened))).some((pid) => signalled.has(pid))) {
    await new Promise((done) => setTimeout(done, 100));
  }
}

/** Signals that reach only this process, not the command in the shell: passed on to it. */
const PASSED_ON = ['SIGTERM', 'SIGHUP'] as const;

/** `shell <stage>`: copies of the stage's fresh checkpoints opened by the plugin, a shell or one command, then everything undone. */
export async function openShell(
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
  const stale = summary.tasks.filter((t) => t.status !== 'cached' && !isResource(graph.nodes.get(t.id)!));
  if (stale.length > 0) {
    io.stderr(`error: ${stale.map((t) => `${t.id} (${t.reason})`).join(', ')} not fresh in the cache; run \`build ${stage}\` first\n`);
    return 1;
  }
  const outputs: Record<string, DependencyOutputs> = {};
  for (const [id, manifest] of manifests) {
    const found = await store.lookup(fingerprintOf(manifest));
    if (!found.ok) continue;
    outputs[id] = entryOutputs(store, found.value).outputs;
  }
  let session: ShellSession | undefined;
  let workDir = '';
  // a copy of a large disk takes a while, and runs to its end (its undo needs the same commands)
  const early = (): void => io.stderr(`\n${interruptSignal(signal) ?? 'interrupted'}: the shell will not open; ${stage} is released once its copies are made\n`);
  signal.addEventListener('abort', early, { once: true });
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
  signal.removeEventListener('abort', early);
  if (prepared !== 0 || !session) {
    if (workDir && (await mountsUnder(workDir)).length === 0) await rm(workDir, { recursive: true, force: true });
    return prepared || 1;
  }
  const opened: ShellSession = session;
  try {
    // the copy and import ran to the end (their undo needs the same commands); a signal meanwhile means no shell
    if (signal.aborted) {
      io.stderr(`${interruptSignal(signal) ?? 'interrupted'}: not opening the shell; releasing ${stage}\n`);
      return 1;
    }
    for (const note of opened.notes) io.stderr(`${note}\n`);
    const [command, ...rest] = args.rest.length > 0 ? args.rest : [process.env['SHELL'] || 'bash'];
    const interactive = args.rest.length === 0;
    // no SIGKILL of our own after a SIGTERM: the command is asked to end, and may take its time
    // the provider's env is the whole environment: what it left out stays out (extendEnv)
    const running = execa(command!, rest, { cwd: opened.cwd, env: opened.env, extendEnv: false, stdio: 'inherit', reject: false, forceKillAfterDelay: false });
    // Ctrl-C reaches the command from the terminal itself (it decides what it means); SIGTERM and
    // SIGHUP come to this process alone, so they are passed on (every time), and the stage is released after
    // the command's processes a passed-on signal reached: release waits for them to leave the copy
    const signalled = new Set<number>();
    let passing: Promise<void> = Promise.resolve();
    const passOn = (name: NodeJS.Signals): void => {
      // an interactive shell ignores SIGTERM; a hangup ends it, and it hangs up its jobs
      const sent = interactive ? 'SIGHUP' : name;
      io.stderr(`\n${name}: passed on to ${command}${sent === name ? '' : ` as ${sent}`} and to what else runs in the copy; ${stage} is released when they end\n`);
      // found while the command lives: once it has ended, its children belong to init
      const pid = running.pid;
      passing = (async () => {
        const jobs = pid === undefined ? [] : await jobsInCopy(opened, pid);
        running.kill(sent);
        // what it started in the image (`cd "$IMAGE_ROOT"; long-cmd`) would keep the mounts busy
        for (const job of jobs) {
          signalled.add(job);
          signalProcess(job, sent);
        }
      })();
    };
    for (const name of PASSED_ON) process.on(name, passOn);
    const child = await running.finally(() => {
      for (const name of PASSED_ON) process.off(name, passOn);
    });
    await passing;
    if (signalled.size > 0) await settle(opened, signalled);
    if (interruptSignal(signal) === 'SIGINT') io.stderr(`releasing ${stage} (Ctrl-C went to the command, not to a build)\n`);
    if (child.exitCode !== undefined) return child.exitCode;
    // as a shell reports them: a signal as 128 + its number, a command that could not start as 127
    if (child.signal) {
      io.stderr(`${command} was killed by ${child.signal}\n`);
      return 128 + (osConstants.signals[child.signal] ?? 0);
    }
    io.stderr(`error: could not run ${command}: ${child.shortMessage}\n`);
    return 127;
  } finally {
    await opened.release();
    if ((await mountsUnder(workDir)).length === 0) await rm(workDir, { recursive: true, force: true });
    else io.stderr(`warning: ${workDir} is still mounted; the next build cleans it up\n`);
  }
}

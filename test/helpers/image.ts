import { execa, type ResultPromise } from 'execa';
import { mkdir, mkdtemp, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { ROOT } from './toy.ts';
import { otherZfsUsers, ZFS_USERS_DIR } from '../../tasks/image/stages/zfs-session.ts';
import { detachDeadMounts, stopZfsFuseProcess } from '../../tasks/image/zfs/zfs-fuse-host.ts';
import { createExec } from '../../lib/execution/exec.ts';
import { children, releaseAndRemove, withStatus } from './reliability.ts';
import { sleep } from './wait.ts';

/** A scratch image project: config, cache and output folders in a temporary folder. */
export interface ImageProject {
  readonly dir: string;
  readonly cache: string;
  readonly out: string;
  readonly configFile: string;
  /** Writes the config (merged over the base config of the project). */
  configure(patch: Record<string, unknown>): Promise<void>;
  /** Runs `Taskfile.ts <args>` with this project's config, cache and output folders (CI line output). */
  run(...args: string[]): Promise<{ exitCode: number; stdout: string; stderr: string }>;
  /** Starts `Taskfile.ts <args>` without waiting (for signals). */
  start(...args: string[]): ResultPromise;
  /** Runs a build with --json and returns each task's final status by id. */
  build(...args: string[]): Promise<{ exitCode: number; statuses: Record<string, string>; stderr: string; stdout: string }>;
  /**
   * Ends what this project started and a failed test left running (SIGTERM, then SIGKILL), exports
   * its pools, unmounts and detaches what is left under its folder, then removes the folder.
   */
  cleanup(): Promise<void>;
}

/** The demo's files, by absolute path, for configs written elsewhere. */
export const DEMO = {
  system: path.join(ROOT, 'tasks/image/demo/system.nix'),
  configuration: path.join(ROOT, 'tasks/image/demo/configuration.nix'),
  motd: path.join(ROOT, 'tasks/image/demo/motd'),
};

/** A small image config on its own pool name, so tests never touch a pool called tank. */
export function baseConfig(pool: string): Record<string, unknown> {
  return {
    name: 'itest',
    format: 'raw',
    bootSize: 40,
    rootSize: 128,
    rootPoolName: pool,
    datasets: {
      [`${pool}/root`]: { mount: '/' },
      [`${pool}/root/var`]: { mount: '/var' },
      [`${pool}/nix`]: { mount: '/nix', properties: { atime: 'off' } },
      [`${pool}/home`]: { mount: '/home', properties: { 'com.example:backup': 'yes', compression: 'gzip' } },
    },
    contents: [
      { source: 'motd', target: '/etc/motd', mode: '0640', user: '0', group: '0' },
      { source: 'tree', target: '/srv/tree', mode: '0750' },
    ],
    configFile: 'configuration.nix',
    includeChannel: false,
    system: { expression: DEMO.system },
  };
}

/** Makes an image project with the demo's files copied beside its config. */
export async function imageProject(pool: string, extraEnv: Record<string, string> = {}): Promise<ImageProject> {
  const dir = await mkdtemp(path.join(tmpdir(), 'image-'));
  const cache = path.join(dir, 'cache');
  const out = path.join(dir, 'out');
  const configFile = path.join(dir, 'config.json');
  await writeFile(path.join(dir, 'motd'), 'hello from the image\n');
  await writeFile(path.join(dir, 'configuration.nix'), await readFile(DEMO.configuration, 'utf8'));
  await mkdir(path.join(dir, 'tree/sub'), { recursive: true });
  await writeFile(path.join(dir, 'tree/sub/file.txt'), 'nested\n');
  let config = baseConfig(pool);
  await writeFile(configFile, JSON.stringify(config));
  const pools = new Set([pool]);
  // a test that fails or times out while awaiting a build leaves it running: cleanup ends it
  const started = children();
  // Options go before a `--`: what follows it is a command for `shell`.
  const argv = (args: string[]) => {
    const cut = args.includes('--') ? args.indexOf('--') : args.length;
    return [path.join(ROOT, 'bin/zfs-image.js'), ...args.slice(0, cut), '--config', configFile, '--cache-dir', cache, '--out', out, ...args.slice(cut)];
  };
  const run = async (...args: string[]) => {
    // no forced SIGKILL 5 s after cleanup's SIGTERM: the build's own cleanup takes seconds
    const result = await started.track(execa(process.execPath, argv(args), { reject: false, cwd: ROOT, env: { CI: '1', ...extraEnv }, forceKillAfterDelay: false }));
    return { exitCode: result.exitCode ?? -1, stdout: result.stdout, stderr: result.stderr };
  };
  return {
    dir,
    cache,
    out,
    configFile,
    async configure(patch) {
      config = { ...config, ...patch };
      if (typeof config['rootPoolName'] === 'string') pools.add(config['rootPoolName']);
      await writeFile(configFile, JSON.stringify(config));
    },
    run,
    start(...args) {
      // No forced SIGKILL after a SIGTERM: the build's own cleanup takes seconds.
      return started.track(execa(process.execPath, argv(args), { reject: false, cwd: ROOT, env: { CI: '1', ...extraEnv }, forceKillAfterDelay: false }));
    },
    async build(...args) {
      const result = await run('build', '--json', ...args);
      const statuses: Record<string, string> = {};
      for (const line of result.stdout.split('\n').filter(Boolean)) {
        const event = JSON.parse(line) as { type: string; id?: string; status?: string };
        if (event.type === 'task' && event.id && event.status !== 'started') statuses[event.id] = event.status!;
      }
      return { ...result, statuses };
    },
    async cleanup() {
      await started.settle(1_000);
      // never a plain rm: through a bound /dev left mounted it would delete the host's device nodes
      await releaseAndRemove(dir, [...pools], () => rm(dir, { recursive: true, force: true }));
    },
  };
}

/** Ids whose status is `ran`, sorted. */
export const ran = (statuses: Record<string, string>): string[] => withStatus(statuses, 'ran');

/**
 * Imports a pool from a copy of a raw disk with the plain zfs-fuse tools, mounts its datasets
 * under `root` through their mountpoint property, runs `inspect`, then exports and stops the
 * daemon if this started it. Everything is undone even when `inspect` throws.
 */
export async function withImportedPool<T>(
  disk: string,
  pool: string,
  mounts: Record<string, string>,
  inspect: (root: string) => Promise<T>,
): Promise<T> {
  const work = await mkdtemp(path.join(tmpdir(), 'inspect-'));
  const vdevs = path.join(work, 'vdevs');
  const root = path.join(work, 'root');
  let daemon: { stop(): Promise<void> } | undefined;
  let imported = false;
  try {
    await mkdir(vdevs);
    await mkdir(root);
    await execa('cp', ['--sparse=always', disk, path.join(work, 'disk.raw')]);
    await symlink(path.join(work, 'disk.raw'), path.join(vdevs, 'disk.raw'));
    daemon = await startZfsFuse(work);
    const listing = await execa('zpool', ['import', '-d', vdevs]);
    if (!listing.stdout.includes(`pool: ${pool}`)) throw new Error(`pool ${pool} not importable:\n${listing.stdout}`);
    await execa('zpool', ['import', '-R', root, '-d', vdevs, pool]); // no -f: it must have been exported
    imported = true;
    for (const [dataset, mount] of Object.entries(mounts).sort((a, b) => a[1].length - b[1].length)) {
      await execa('zfs', ['set', `mountpoint=${mount}`, dataset]);
    }
    return await inspect(root);
  } finally {
    if (imported) await execa('zpool', ['export', pool], { reject: false });
    await daemon?.stop();
    await rm(work, { recursive: true, force: true });
  }
}

/**
 * Starts zfs-fuse unless one answers, registered as a ZFS user like a build; `stop` ends it only
 * if this started it and no build or other test still uses it.
 */
export async function startZfsFuse(work: string): Promise<{ stop(): Promise<void> }> {
  const marker = path.join(ZFS_USERS_DIR, String(process.pid));
  await mkdir(ZFS_USERS_DIR, { recursive: true });
  await writeFile(marker, 'test\n');
  try {
    return await startOrReuse(work, marker);
  } catch (error) {
    await rm(marker, { force: true });
    throw error;
  }
}

async function startOrReuse(work: string, marker: string): Promise<{ stop(): Promise<void> }> {
  // A daemon that takes this long for `zpool list` is deadlocked: replace it, or every later test hangs on it.
  const answers = async () => {
    const result = await execa('zpool', ['list'], { reject: false, timeout: 20_000 });
    if (result.timedOut) await killStuckZfsFuse();
    return result.exitCode === 0;
  };
  if (await answers()) return { stop: async () => void (await rm(marker, { force: true })) };
  const pidFile = path.join(work, 'zfs-fuse.pid');
  // zfs-fuse refuses to start over a pid file a killed daemon left
  await rm(pidFile, { force: true });
  // a daemon that is still shutting down holds zfs-fuse's own lock for a few seconds: retry, as the driver does
  for (let attempt = 0; ; attempt++) {
    const started = await execa('zfs-fuse', ['--pidfile', pidFile, '--no-kstat-mount'], { reject: false });
    if (started.exitCode === 0) break;
    if (attempt >= 60) throw new Error(`zfs-fuse did not start: ${started.stderr || `exit ${started.exitCode}`}`);
    await sleep(500);
  }
  for (let i = 0; i < 100 && !(await answers()); i++) await sleep(100);
  const pid = Number((await readFile(pidFile, 'utf8')).trim());
  return {
    async stop() {
      await rm(marker, { force: true });
      if ((await otherZfsUsers()).length > 0) return;
      // it normally exits about 5 s after SIGTERM; one still there after 30 s is stuck and gets SIGKILL
      await stopZfsFuseProcess(pid, createExec(), 30_000);
    },
  };
}

/** Kills every zfs-fuse daemon and lazily detaches its FUSE mounts (only for a daemon that stopped answering). */
async function killStuckZfsFuse(): Promise<void> {
  console.warn('zfs-fuse stopped answering: killing it and detaching its mounts so later tests do not hang');
  await execa('pkill', ['-KILL', '-x', 'zfs-fuse'], { reject: false });
  await sleep(500);
  await detachDeadMounts(createExec());
}

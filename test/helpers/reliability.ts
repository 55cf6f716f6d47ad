// Helpers for the reliability tests: unique pool names, what a build may leave on the host
// (pools, mounts, loop devices, daemons), and a forced cleanup for afterAll hooks.
import { execa, type ResultPromise } from 'execa';
import { randomBytes } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { mountsUnder } from '../../lib/execution/mount-table.ts';
import { nixOptions } from '../../tasks/image/nix-options.ts';
import { otherZfsUsers } from '../../tasks/image/stages/zfs-session.ts';
import { ROOT } from './toy.ts';
import { sleep, until } from './wait.ts';

/** A pool name no other test (or a second copy of this suite) uses: `<stem><6 hex>`. */
export function uniquePool(stem: string): string {
  return `${stem}${randomBytes(3).toString('hex')}`;
}

/** Names of the pools zfs-fuse has imported now ([] when no daemon answers). */
export async function importedPools(): Promise<string[]> {
  const listing = await execa('zpool', ['list', '-H', '-o', 'name'], { reject: false });
  return listing.exitCode === 0 ? listing.stdout.split('\n').filter(Boolean) : [];
}

/** Loop devices whose backing file lies under `dir`. */
export async function loopsUnder(dir: string): Promise<string[]> {
  const listing = await execa('losetup', ['--list', '--noheadings', '--output', 'NAME,BACK-FILE'], { reject: false });
  return listing.stdout
    .split('\n')
    .map((line) => line.trim().split(/\s+/))
    .filter(([name, file]) => name && file && file.startsWith(`${dir}/`))
    .map(([name]) => name!);
}

/** What a finished build must not leave on the host: `pools` still imported, mounts and loop devices under `dir`. */
export async function leftovers(dir: string, pools: readonly string[]): Promise<{ pools: string[]; mounts: string[]; loops: string[] }> {
  const imported = await importedPools();
  return { pools: pools.filter((p) => imported.includes(p)), mounts: await mountsUnder(dir), loops: await loopsUnder(dir) };
}

/** Entries of a cache subfolder (staging, work); [] when it does not exist. */
export async function entries(dir: string): Promise<string[]> {
  return (await readdir(dir).catch(() => [] as string[])).sort();
}

/**
 * Undoes whatever a failed test or a killed build left: exports `pools` (forced if needed),
 * lazily unmounts everything under `dir` (deepest first) and detaches loop devices on its files.
 * Never touches a pool not named in `pools`. Safe to call when nothing is left.
 */
export async function forceRelease(dir: string, pools: readonly string[]): Promise<void> {
  const imported = await importedPools();
  for (const pool of pools.filter((p) => imported.includes(p))) {
    const plain = await execa('zpool', ['export', pool], { reject: false });
    if (plain.exitCode !== 0) await execa('zpool', ['export', '-f', pool], { reject: false });
  }
  for (const mount of (await mountsUnder(dir)).sort((a, b) => b.length - a.length)) {
    await execa('umount', ['--lazy', mount], { reject: false });
  }
  for (const loop of await loopsUnder(dir)) await execa('losetup', ['--detach', loop], { reject: false });
}

/** Pids of live (not zombie) zfs-fuse daemons, as ps sees them (not through the code under test). */
export async function zfsFuseDaemons(): Promise<number[]> {
  const listing = await execa('ps', ['-C', 'zfs-fuse', '-o', 'pid=,stat='], { reject: false });
  return listing.stdout
    .split('\n')
    .map((line) => line.trim().split(/\s+/))
    .filter(([pid, stat]) => pid && stat && !stat.startsWith('Z'))
    .map(([pid]) => Number(pid));
}

/** Where a build that started the zfs-fuse daemon writes its pid (tasks/image/stages/zfs-session.ts). */
export const ZFS_FUSE_STARTER_FILE = '/run/nixos-zfs-image/zfs-fuse-started-by';

/** The pid of the build that started the running zfs-fuse daemon, if one recorded it. */
export async function zfsFuseStarter(): Promise<number | undefined> {
  const pid = Number((await readFile(ZFS_FUSE_STARTER_FILE, 'utf8').catch(() => '')).split('\n')[0]!.trim());
  return pid > 0 ? pid : undefined;
}

/**
 * Stops the zfs-fuse daemon if one of `deadRuns` (builds of ours killed with -9) started it and
 * nobody uses it any more: no ZFS user registered, no pool imported.
 */
export async function stopDaemonOfDeadRuns(deadRuns: readonly number[]): Promise<void> {
  const starter = await zfsFuseStarter();
  if (starter === undefined || !deadRuns.includes(starter)) return;
  const daemons = await zfsFuseDaemons();
  if (daemons.length === 0) return;
  if ((await otherZfsUsers()).length > 0 || (await importedPools()).length > 0) return;
  for (const pid of daemons) process.kill(pid, 'SIGTERM');
  // zfs-fuse waits for its worker threads (about 5 s) before it exits.
  const deadline = Date.now() + 20_000;
  while (Date.now() < deadline && (await zfsFuseDaemons()).some((pid) => daemons.includes(pid))) await sleep(200);
  for (const pid of (await zfsFuseDaemons()).filter((p) => daemons.includes(p))) process.kill(pid, 'SIGKILL');
}

/** SIGKILL to a process's whole group (a command the runner started in its own group), if it is still there. */
export function killProcessGroup(pid: number): void {
  try {
    process.kill(-pid, 'SIGKILL');
  } catch {
    // already gone
  }
}

/** Collects a running child's stderr as it comes, to wait for a line before the child ends. */
export function watchStderr(child: ResultPromise): { text(): string; waitFor(pattern: RegExp, ms?: number): Promise<void> } {
  let text = '';
  child.stderr?.on('data', (chunk: Buffer | string) => {
    text += chunk.toString();
  });
  return {
    text: () => text,
    waitFor: (pattern, ms) => until(() => pattern.test(text), `stderr matching ${pattern}`, ms),
  };
}

/** One line of `build --json`. */
export interface JsonEvent {
  readonly type: string;
  readonly id?: string;
  readonly status?: string;
  readonly reason?: string;
  readonly fingerprint?: string;
  readonly message?: string;
  readonly failure?: { reason: string; command?: string; exitCode?: number; tail?: string[]; message?: string; logFile?: string };
}

/** Parses `--json` output, one object per line. */
export function jsonEvents(stdout: string): JsonEvent[] {
  return stdout
    .split('\n')
    .filter(Boolean)
    .map((line) => JSON.parse(line) as JsonEvent);
}

/** Final task events (not `started`) by task id. */
export function finalEvents(stdout: string): Record<string, JsonEvent> {
  const out: Record<string, JsonEvent> = {};
  for (const event of jsonEvents(stdout)) if (event.type === 'task' && event.id && event.status !== 'started') out[event.id] = event;
  return out;
}

/** Ids whose final status is `status`, sorted. */
export function withStatus(statuses: Record<string, string>, status: string): string[] {
  return Object.entries(statuses)
    .filter(([, s]) => s === status)
    .map(([id]) => id)
    .sort();
}

const NIX_BUILD_OFFLINE = ['--no-out-link', ...nixOptions()];

/** Builds the demo stand-in system with extra nix-build arguments; returns its toplevel. */
export async function demoSystem(...args: string[]): Promise<string> {
  return (await execa('nix-build', [path.join(ROOT, 'tasks/image/demo/system.nix'), ...args, ...NIX_BUILD_OFFLINE])).stdout.trim();
}

/** Builds test/reliability/filler-system.nix: the demo system plus `files` files of `fileBytes` random bytes. */
export async function fillerSystem(files: number, fileBytes: number): Promise<string> {
  const nix = path.join(ROOT, 'test/reliability/filler-system.nix');
  return (await execa('nix-build', [nix, '--arg', 'files', String(files), '--arg', 'fileBytes', String(fileBytes), ...NIX_BUILD_OFFLINE])).stdout.trim();
}

/**
 * Releases what `dir` may still hold (see forceRelease), then removes it, but never while anything
 * is mounted under it: `rm -r` through a bound /dev would delete the host's device nodes.
 */
export async function releaseAndRemove(dir: string, pools: readonly string[], remove: () => Promise<void>): Promise<void> {
  await forceRelease(dir, pools);
  const still = await mountsUnder(dir);
  if (still.length > 0) throw new Error(`not removing ${dir}: still mounted at ${still.join(', ')}`);
  await remove();
}

/** Builds a test started and may not have awaited (a failed assertion leaves them running). */
export interface Children {
  track<T extends ResultPromise>(child: T): T;
  /** Waits up to `ms` for every tracked child; SIGTERM (the build cleans up), then SIGKILL, for the rest. */
  settle(ms?: number): Promise<void>;
}

export function children(): Children {
  const list: ResultPromise[] = [];
  const live = (): ResultPromise[] => list.filter((c) => c.exitCode === null && c.signalCode === null);
  const settled = (ms: number): Promise<unknown> => Promise.race([Promise.allSettled(live()), sleep(ms)]);
  return {
    track(child) {
      list.push(child);
      return child;
    },
    async settle(ms = 60_000) {
      await settled(ms);
      for (const child of live()) child.kill('SIGTERM');
      await settled(30_000);
      for (const child of live()) child.kill('SIGKILL');
      await settled(5_000);
    },
  };
}

/** Runs every cleanup step even when one throws; rethrows the first error at the end. */
export async function cleanupSteps(...steps: (() => Promise<unknown> | unknown)[]): Promise<void> {
  const errors: unknown[] = [];
  for (const step of steps) {
    try {
      await step();
    } catch (error) {
      errors.push(error);
    }
  }
  if (errors.length > 0) throw errors[0];
}

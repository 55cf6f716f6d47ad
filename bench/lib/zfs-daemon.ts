// The zfs-fuse daemon for the image benchmark: one daemon for all runs, so neither the staged
// build nor the straight-line script starts or stops it inside a measured run. Uses the
// project's own driver (start with retries, stop only what it started) and its registry of
// ZFS users, so other builds on this machine do not stop it under us.
import { execa } from 'execa';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { mountsUnder } from '../../lib/execution/mount-table.ts';
import { otherZfsUsers, ZFS_USERS_DIR } from '../../tasks/image/stages/zfs-session.ts';
import { createZfsFuseDriver } from '../../tasks/image/zfs/zfs-fuse.ts';
import type { ZfsSession } from '../../tasks/image/zfs/driver.ts';
import { timeIt } from './measure.ts';

/** The daemon as the benchmark holds it. */
export interface DaemonHold {
  /** ms the start took, when this process started the daemon. */
  readonly startMs: number | undefined;
  /** Makes sure a daemon answers (another user may have stopped one we reused); restarts it if needed. */
  ensure(): Promise<void>;
  /** Stops the daemon if this process started it and nobody else uses it; returns ms taken, or why not. */
  release(): Promise<{ stopMs?: number; note: string }>;
}

const marker = path.join(ZFS_USERS_DIR, String(process.pid));

/** Starts zfs-fuse unless one answers, and registers this process as a ZFS user. */
export async function holdZfsDaemon(): Promise<DaemonHold> {
  await mkdir(ZFS_USERS_DIR, { recursive: true });
  await writeFile(marker, `${new Date().toISOString()} bench\n`);
  const driver = createZfsFuseDriver();
  const sessions: ZfsSession[] = [];
  const first = await timeIt(() => driver.prepare());
  sessions.push(first.value);
  return {
    startMs: first.value.started ? first.ms : undefined,
    async ensure() {
      const again = await driver.prepare();
      if (again.started) sessions.push(again);
    },
    async release() {
      await rm(marker, { force: true });
      const mine = sessions.filter((s) => s.started);
      if (mine.length === 0) return { note: 'zfs-fuse was already running (another user); left running' };
      const others = await otherZfsUsers();
      if (others.length > 0) return { note: `left zfs-fuse running: pids ${others.join(', ')} use it` };
      let stopMs: number | undefined;
      let note = 'stopped the zfs-fuse daemon this benchmark started';
      for (const session of mine) {
        const stopped = await timeIt(() => session.stop());
        if (stopped.value.stopped) stopMs = stopped.ms;
        else note = `left zfs-fuse running: ${stopped.value.reason ?? 'unknown'}`;
      }
      return { stopMs, note };
    },
  };
}

/** Names of the imported pools ([] when no daemon answers). */
export async function importedPools(): Promise<string[]> {
  const result = await execa('zpool', ['list', '-H', '-o', 'name'], { reject: false });
  return result.exitCode === 0 ? String(result.stdout).split('\n').filter(Boolean) : [];
}

/**
 * Leaves nothing behind under `dir`: exports `pool` if it is imported, lazily unmounts what is
 * still mounted below `dir` (deepest first), then removes `dir`.
 */
export async function scrub(dir: string, pool: string): Promise<string[]> {
  const report: string[] = [];
  if ((await importedPools()).includes(pool)) {
    await execa('zpool', ['export', '-f', pool], { reject: false });
    report.push(`exported pool ${pool} left imported`);
  }
  for (const mount of (await mountsUnder(dir)).sort((a, b) => b.length - a.length)) {
    await execa('umount', ['--lazy', mount], { reject: false });
    report.push(`unmounted ${mount}`);
  }
  if ((await mountsUnder(dir)).length === 0) await rm(dir, { recursive: true, force: true });
  else report.push(`left ${dir}: still mounted`);
  return report;
}

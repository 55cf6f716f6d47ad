import { readdir, rm } from 'node:fs/promises';
import path from 'node:path';
import { mountsUnder } from '../execution/mount-table.ts';
import { isAlive } from './lock.ts';

/** What a sweeper did with a dead run's folder: one line per thing released, and why the folder must stay, if it must. */
export interface SweepReport {
  readonly lines: readonly string[];
  /** Set when something the sweeper could not release still uses files in the folder (a pool on a disk in it). */
  readonly keep?: string;
}

/** A plugin's hook to release what a dead run held in one of its folders (a pool, mounts, loop devices). */
export type Sweeper = (leftover: { folder: string; pid: number }) => Promise<SweepReport>;

/**
 * Removes staging and working folders of runs that are gone (their pid leads the folder name).
 * Plugins' sweepers run first; a folder a sweeper must keep, or that still has mounts, is left
 * alone and reported.
 */
export async function sweepLeftovers(folders: readonly string[], sweepers: readonly Sweeper[] = []): Promise<string[]> {
  const report: string[] = [];
  for (const parent of folders) {
    let names: string[] = [];
    try {
      names = await readdir(parent);
    } catch {
      continue;
    }
    for (const name of names) {
      const pid = Number(name.split('.')[0]);
      if (!Number.isInteger(pid) || pid <= 0 || isAlive(pid)) continue;
      const folder = path.join(parent, name);
      const kept: string[] = [];
      for (const sweeper of sweepers) {
        try {
          const swept = await sweeper({ folder, pid });
          report.push(...swept.lines);
          if (swept.keep !== undefined) kept.push(swept.keep);
        } catch (error) {
          report.push(`could not clean ${folder}: ${(error as Error).message}`);
          kept.push('its cleanup failed');
        }
      }
      // deleting files a pool still uses would leave the pool without its disk
      if (kept.length > 0) {
        report.push(`left ${folder} in place: ${kept.join('; ')} (release it by hand, then rerun)`);
        continue;
      }
      const mounts = await mountsUnder(folder);
      if (mounts.length > 0) {
        report.push(`left ${folder} in place: still mounted at ${mounts.join(', ')} (unmount by hand, then rerun)`);
        continue;
      }
      await rm(folder, { recursive: true, force: true });
      report.push(`removed ${path.relative(path.dirname(parent), folder)} left by dead run ${pid}`);
    }
  }
  return report;
}

// The zfs-fuse daemon stops answering in the middle of install (stopped with SIGSTOP, which leaves
// its clients waiting as a deadlock does): the build must end with a message saying what happened
// and what to do, instead of waiting forever on the mounted datasets.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { imageProject, startZfsFuse, type ImageProject } from '../helpers/image.ts';
import {
  children,
  cleanupSteps,
  leftovers,
  releaseAndRemove,
  uniquePool,
  until,
  withStatus,
  zfsFuseDaemons,
  zfsFuseStarter,
} from '../helpers/reliability.ts';
import { makeShims, type Shims } from '../helpers/shims.ts';
import { detachDeadMounts } from '../../tasks/image/zfs/zfs-fuse.ts';
import { otherZfsUsers } from '../../tasks/image/stages/zfs-session.ts';
import { createExec } from '../../lib/execution/exec.ts';

const POOL = uniquePool('relhung');
let scratch: string;
let shims: Shims;
let project: ImageProject;
/** Daemons this file stopped with SIGSTOP: continued (or killed) whatever happens. */
const stopped = new Set<number>();
const started = children();

beforeAll(async () => {
  scratch = await mkdtemp(path.join(tmpdir(), 'rel-hung-'));
  shims = await makeShims(scratch, ['chroot']);
  // a short limit: the build asks the daemon every half second and gives it 2 s to answer
  project = await imageProject(POOL, { PATH: shims.path, ZFS_IMAGE_ZFS_TIMEOUT: '2' });
});

afterAll(async () => {
  await cleanupSteps(
    () => shims?.unpause(),
    () => {
      for (const pid of stopped) {
        try {
          process.kill(pid, 'SIGCONT');
        } catch {
          // gone already
        }
      }
    },
    () => started.settle(),
    () => project && releaseAndRemove(project.dir, [POOL], () => project.cleanup()),
    () => rm(scratch, { recursive: true, force: true }),
  );
});

/**
 * Starts a build, pauses it at install's chroot (datasets mounted) and stops the daemon. The build
 * stays paused there: only the build's watch can find the hang (install's own file operations might
 * be served from the kernel's cache). The caller unpauses it.
 */
async function hangDuringInstall(): Promise<{ result: Promise<{ exitCode?: number }>; output(): string; daemon: number }> {
  await shims.pause('chroot', 'ANY');
  const child = started.track(project.start('build'));
  let output = '';
  child.stdout?.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr?.on('data', (chunk: Buffer) => (output += chunk.toString()));
  await shims.waitPaused();
  const daemons = await zfsFuseDaemons();
  expect(daemons).toHaveLength(1);
  const daemon = daemons[0]!;
  process.kill(daemon, 'SIGSTOP');
  stopped.add(daemon);
  return { result: child, output: () => output, daemon };
}

describe('a zfs-fuse daemon that stops answering during install', () => {
  it('that the build started: the build kills it, fails with what happened, leaves nothing behind, and the next build resumes', async (ctx) => {
    // the build must start its own daemon: skip where another daemon or ZFS user is around
    if ((await zfsFuseDaemons()).length > 0 || (await otherZfsUsers()).length > 0) ctx.skip();
    const first = await project.build('--json');
    expect(first.exitCode, first.stderr).toBe(0);
    await project.configure({ contents: [] }); // install and what follows are stale again

    const hang = await hangDuringInstall();
    await until(() => hang.output().includes('killed the hung zfs-fuse daemon this build started and detached its mounts'), 'the kill', 60_000);
    expect(hang.output()).toMatch(/zfs-fuse did not answer `\S*zpool list -H -o name` within 2 s: the daemon looks hung/);
    await shims.unpause(); // install goes on, into mounts whose daemon is gone
    const result = await hang.result;
    expect(result.exitCode).toBe(1);
    expect(await zfsFuseDaemons()).toEqual([]);
    expect(await zfsFuseStarter()).toBeUndefined();
    expect(await leftovers(project.dir, [POOL])).toEqual({ pools: [], mounts: [], loops: [] });

    const next = await project.build();
    expect(next.exitCode, next.stderr + next.stdout).toBe(0);
    expect(withStatus(next.statuses, 'cached')).toEqual(expect.arrayContaining(['create-pool', 'partition', 'system']));
    expect(withStatus(next.statuses, 'ran')).toEqual(expect.arrayContaining(['mount', 'install', 'export-pool', 'convert:root']));
    // it started a daemon of its own and stopped it at its end
    expect(await zfsFuseDaemons()).toEqual([]);
  });

  it('that someone else started: the build says so and waits; killing the daemon by hand ends it', async () => {
    const daemon = await startZfsFuse(scratch); // as a user would have: a daemon the build must not kill
    try {
      await project.configure({ contents: [{ source: 'motd', target: '/etc/motd' }] });
      const hang = await hangDuringInstall();
      await until(() => /another build or you started this zfs-fuse daemon, so it is left running/.test(hang.output()), 'the warning', 60_000);
      expect(hang.output()).toMatch(/zfs-fuse did not answer `\S*zpool list -H -o name` within 2 s/);
      expect(await zfsFuseDaemons()).toEqual([hang.daemon]); // still there
      // the recovery the message gives: kill it, detach its mounts
      process.kill(hang.daemon, 'SIGKILL');
      stopped.delete(hang.daemon);
      await shims.unpause();
      const result = await hang.result;
      expect(result.exitCode).toBe(1);
      await detachDeadMounts(createExec());
      expect(await leftovers(project.dir, [POOL])).toEqual({ pools: [], mounts: [], loops: [] });
    } finally {
      await daemon.stop();
    }
    // and the next build sweeps what the failed one left and resumes
    const next = await project.build();
    expect(next.exitCode, next.stderr + next.stdout).toBe(0);
    expect(withStatus(next.statuses, 'cached')).toContain('create-pool');
  });
});

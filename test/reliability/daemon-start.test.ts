// Ctrl-C while a build starts the zfs-fuse daemon: the daemon that has already forked is stopped,
// and the build's registration as a ZFS user goes with it.
import { chmod, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ZFS_USERS_DIR } from '../../tasks/image/stages/zfs-session.ts';
import { findProgram } from '../../lib/execution/which.ts';
import { imageProject, type ImageProject } from '../helpers/image.ts';
import { cleanupSteps, importedPools, jsonEvents, uniquePool, zfsFuseDaemons } from '../helpers/reliability.ts';
import { until } from '../helpers/wait.ts';

const POOL = uniquePool('rds');
let scratch: string | undefined;
let project: ImageProject | undefined;

/** Daemons whose pid file lies in this test's folder: started by the builds here, never anyone else's. */
async function ourDaemons(): Promise<number[]> {
  const ours: number[] = [];
  for (const pid of await zfsFuseDaemons()) {
    const argv = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
    if (scratch && argv.includes(scratch)) ours.push(pid);
  }
  return ours;
}

beforeAll(async () => {
  scratch = await mkdtemp(path.join(tmpdir(), 'rel-daemon-'));
  const bin = path.join(scratch, 'bin');
  await mkdir(bin);
  // the real zfs-fuse forks its daemon and returns; the wrapper then waits, so the signal comes after the fork
  await writeFile(
    path.join(bin, 'zfs-fuse'),
    ['#!/bin/sh', `"${findProgram('zfs-fuse')}" "$@" || exit $?`, `: > "${scratch}/forked"`, `while [ -e "${scratch}/hold" ]; do sleep 0.1; done`, ''].join('\n'),
  );
  await chmod(path.join(bin, 'zfs-fuse'), 0o755);
  // TMPDIR: the daemon's pid file goes under the scratch folder, which tells its daemon apart
  project = await imageProject(POOL, { PATH: `${bin}:${process.env['PATH'] ?? ''}:/usr/sbin:/sbin`, TMPDIR: scratch });
});

afterAll(async () => {
  await cleanupSteps(
    () => scratch && rm(path.join(scratch, 'hold'), { force: true }),
    () => project?.cleanup(),
    async () => {
      for (const pid of await ourDaemons()) process.kill(pid, 'SIGKILL');
    },
    () => scratch && rm(scratch, { recursive: true, force: true }),
  );
});

describe('Ctrl-C while the zfs-fuse daemon starts', () => {
  it('stops the daemon that had forked, leaves no registration, and the rerun builds', async (ctx) => {
    // only a build that starts the daemon runs the start
    if ((await zfsFuseDaemons()).length > 0) return ctx.skip();
    await writeFile(path.join(scratch!, 'hold'), '');
    const child = project!.start('build');
    await until(() => existsSync(path.join(scratch!, 'forked')), 'the daemon start', 120_000);
    child.kill('SIGINT');
    await rm(path.join(scratch!, 'hold'), { force: true });
    const stopped = await child;
    expect(stopped.exitCode).toBe(1);
    expect(stopped.stdout).toMatch(/create-pool: failed .*interrupted/);
    await until(async () => (await ourDaemons()).length === 0, 'the daemon to be stopped', 30_000).catch(() => undefined);
    expect(await ourDaemons()).toEqual([]);
    expect(existsSync(path.join(ZFS_USERS_DIR, String(child.pid)))).toBe(false);
    expect(await importedPools()).not.toContain(POOL);
    // after Ctrl-C it stopped asking the new daemon for an answer at once (it used to ask for its whole start-up limit)
    const log = (await project!.run('logs', 'create-pool')).stdout;
    expect(log.split('\n').filter((line) => line.includes('failed (This operation was aborted)')).length).toBeLessThanOrEqual(1);
    const resumed = await project!.build();
    expect(resumed.exitCode, resumed.stderr).toBe(0);
    expect(resumed.statuses['create-pool']).toBe('ran');
    // it started its own daemon, and says so while it stops it (the seconds after the last task)
    const notes = jsonEvents(resumed.stdout).filter((e) => e.type === 'notice').map((e) => e.message);
    expect(notes).toContain('stopping the zfs-fuse daemon started for this run (a few seconds)');
    expect(await ourDaemons()).toEqual([]);
  });
});

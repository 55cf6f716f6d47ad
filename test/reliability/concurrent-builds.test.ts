// Builds at the same time, made to overlap for sure by pausing the first one inside install:
// on one cache folder the second waits for the lock (or, with --no-wait, refuses at once), and
// on two cache folders with two pool names both run side by side and both succeed.
import { mkdtemp, readFile, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { imageProject, startZfsFuse, type ImageProject } from '../helpers/image.ts';
import {
  children,
  cleanupSteps,
  entries,
  importedPools,
  leftovers,
  uniquePool,
  watchStderr,
} from '../helpers/reliability.ts';
import { sleep } from '../helpers/wait.ts';
import { makeShims, type Shims } from '../helpers/shims.ts';

let scratch: string;
let daemon: { stop(): Promise<void> } | undefined;
const made: { project: ImageProject; pool: string; shims: Shims }[] = [];
const started = children();

beforeAll(async () => {
  scratch = await mkdtemp(path.join(tmpdir(), 'rel-conc-'));
  daemon = await startZfsFuse(scratch);
});

afterAll(async () => {
  await cleanupSteps(
    ...made.map(({ shims }) => () => shims.unpause()),
    () => started.settle(),
    ...made.map(({ project }) => () => project.cleanup()),
    () => daemon?.stop(),
    () => rm(scratch, { recursive: true, force: true }),
  );
}, 300_000); // after a failure: builds get a minute to finish, then their own cleanup, then the daemon's stop

/** A project whose builds can be paused in chroot (zpool and zfs sit beside the wrapped zfs-fuse). */
async function pausableProject(stem: string): Promise<{ project: ImageProject; pool: string; shims: Shims }> {
  const pool = uniquePool(stem);
  const shims = await makeShims(await mkdtemp(path.join(scratch, `${stem}-`)), ['zfs-fuse', 'zpool', 'zfs', 'chroot']);
  const entry = { project: await imageProject(pool, { PATH: shims.path }), pool, shims };
  made.push(entry);
  return entry;
}

const ALL_TASKS = 12;

describe('two builds on one cache folder', () => {
  it('the second waits for the first and then finds everything fresh; --no-wait refuses at once, for build and clean', async () => {
    const { project, pool, shims } = await pausableProject('relone');
    await shims.pause('chroot', 'ANY');
    const first = started.track(project.start('build'));
    await shims.waitPaused(); // the first holds the lock, its pool imported, halfway through install

    const second = started.track(project.start('build'));
    const secondErr = watchStderr(second);
    await secondErr.waitFor(new RegExp(`^waiting for another run \\(pid ${first.pid}, build\\) to release ${project.cache}$`, 'm'), 30_000);

    const refused = await project.run('build', '--no-wait');
    expect(refused.exitCode).toBe(1);
    expect(refused.stderr).toMatch(
      new RegExp(`^error: ${project.cache} is in use by pid ${first.pid} \\(build since \\S+\\); rerun without --no-wait to wait for it$`, 'm'),
    );
    expect(refused.stdout).toBe(''); // no task was even considered
    const clean = await project.run('clean', '--no-wait');
    expect(clean.exitCode).toBe(1);
    expect(await entries(path.join(project.cache, 'artifacts'))).not.toEqual([]); // clean removed nothing under a live build

    await sleep(1000); // the waiting build keeps waiting while the first is paused
    expect(second.exitCode).toBeNull();
    expect(await importedPools()).toContain(pool);

    await shims.unpause();
    const [a, b] = await Promise.all([first, second]);
    expect(a.exitCode, `${a.stdout}${a.stderr}`).toBe(0);
    expect(a.stdout).toMatch(new RegExp(`done in .*: ${ALL_TASKS} ran, 0 cached`));
    expect(b.exitCode, `${b.stdout}${b.stderr}`).toBe(0);
    expect(b.stdout).toMatch(new RegExp(`done in .*: 0 ran, ${ALL_TASKS - 1} cached, 1 skipped, 0 failed`)); // mount: not needed
    expect(b.stderr).not.toMatch(/cleanup:/); // nothing of the live first run was taken for a dead run's leftovers

    expect(await leftovers(project.dir, [pool])).toEqual({ pools: [], mounts: [], loops: [] });
    const verified = await project.run('verify');
    expect(verified.exitCode, verified.stdout).toBe(0);
    expect(verified.stdout).toMatch(new RegExp(`^${ALL_TASKS - 1} entries intact, 0 damaged$`, 'm'));
  });
});

describe('two builds on two cache folders', () => {
  it('with two pool names, both are inside install at the same time and both succeed', async () => {
    const one = await pausableProject('relpair');
    const two = await pausableProject('relpair');
    for (const side of [one, two]) await side.shims.pause('chroot', 'ANY');
    const builds = [one, two].map((side) => started.track(side.project.start('build')));
    await Promise.all([one.shims.waitPaused(), two.shims.waitPaused()]);
    // Both transactions are open at once: both pools imported side by side.
    const imported = await importedPools();
    expect(imported).toContain(one.pool);
    expect(imported).toContain(two.pool);

    for (const side of [one, two]) await side.shims.unpause();
    const results = await Promise.all(builds);
    for (const [index, side] of [one, two].entries()) {
      const result = results[index]!;
      expect(result.exitCode, `${result.stdout}${result.stderr}`).toBe(0);
      expect(result.stdout).toMatch(new RegExp(`done in .*: ${ALL_TASKS} ran, 0 cached, 0 skipped, 0 failed`));
      expect(result.stderr).not.toMatch(/waiting for another run|cleanup:/);
      expect((await readdir(side.project.out)).sort()).toEqual(['image-info.json', 'nixos.boot.img', 'nixos.root.img']);
      const info = JSON.parse(await readFile(path.join(side.project.out, 'image-info.json'), 'utf8')) as { pool: { name: string } };
      expect(info.pool.name).toBe(side.pool);
      expect(await leftovers(side.project.dir, [side.pool])).toEqual({ pools: [], mounts: [], loops: [] });
      expect(await entries(path.join(side.project.cache, 'work'))).toEqual([]);
    }
  });
});

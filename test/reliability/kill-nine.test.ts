// kill -9 of the runner in the middle of a real image build (inside install, inside create-pool):
// the next run says what it cleaned (the dead run's lock, its pool, its mounts, its folders),
// then resumes from the last published checkpoint and succeeds.
import { execa } from 'execa';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mountsUnder } from '../../lib/execution/mount-table.ts';
import { imageProject, startZfsFuse, type ImageProject } from '../helpers/image.ts';
import {
  children,
  cleanupSteps,
  entries,
  importedPools,
  jsonEvents,
  killProcessGroup,
  leftovers,
  stopDaemonOfDeadRuns,
  uniquePool,
  withStatus,
  zfsFuseDaemons,
  zfsFuseStarter,
  ZFS_FUSE_STARTER_FILE,
} from '../helpers/reliability.ts';
import { running, until } from '../helpers/wait.ts';
import { otherZfsUsers } from '../../tasks/image/stages/zfs-session.ts';
import { makeShims, type Shims } from '../helpers/shims.ts';

const POOL = uniquePool('relkill');
let scratch: string;
let shims: Shims;
let project: ImageProject;
let daemon: { stop(): Promise<void> } | undefined;
/** Runners this file killed with -9. */
const deadRuns: number[] = [];
const started = children();

beforeAll(async () => {
  scratch = await mkdtemp(path.join(tmpdir(), 'rel-kill-'));
  // One daemon for the whole file (registered as a ZFS user), so builds do not start and stop their own.
  daemon = await startZfsFuse(scratch);
  // zpool and zfs are found beside the zfs-fuse daemon, so it is wrapped too.
  shims = await makeShims(scratch, ['zfs-fuse', 'zpool', 'zfs', 'chroot']);
  project = await imageProject(POOL, { PATH: shims.path });
  const first = await project.build();
  expect(first.exitCode, first.stderr).toBe(0);
});

afterAll(async () => {
  await cleanupSteps(
    () => shims?.unpause(),
    () => started.settle(),
    () => project?.cleanup(),
    () => stopDaemonOfDeadRuns(deadRuns), // in case a test failed before the next run stopped it
    () => daemon?.stop(),
    () => rm(scratch, { recursive: true, force: true }),
  );
});

/** Starts a build that pauses in `tool verb`, then SIGKILLs the runner and the paused command's process group. */
async function killInside(tool: string, verb: string): Promise<number> {
  await shims.pause(tool, verb);
  const child = started.track(project.start('build'));
  const shim = await shims.waitPaused();
  const dead = child.pid!;
  deadRuns.push(dead);
  child.kill('SIGKILL');
  const killed = await child;
  expect(killed.signal).toBe('SIGKILL');
  // The paused command runs in a process group of its own: kill it too, so nothing of the dead run lives on.
  killProcessGroup(shim);
  await until(async () => !(await running(shim)), `the paused ${tool} (pid ${shim}) to die`, 10_000);
  await shims.unpause();
  return dead;
}

const work = (): string => path.join(project.cache, 'work');
const staging = (): string => path.join(project.cache, 'staging');

describe('kill -9 of the runner', () => {
  it('inside install: the next run removes the lock, exports the pool, unmounts, removes the folders, says so, and resumes', async () => {
    await execa('sh', ['-c', `echo '# install again' >> '${path.join(project.dir, 'configuration.nix')}'`]);
    const dead = await killInside('chroot', 'ANY');

    // What the dead run left: its lock, its pool imported, datasets and /dev, /proc, /sys mounted in its work folder.
    expect(JSON.parse(await readFile(path.join(project.cache, 'lock'), 'utf8'))).toMatchObject({ pid: dead, command: 'build' });
    expect(await importedPools()).toContain(POOL);
    const held = await mountsUnder(work());
    expect(held).toEqual(expect.arrayContaining([expect.stringMatching(new RegExp(`/work/${dead}\\.mount\\.\\w+/root/dev$`))]));
    expect(await entries(work())).toEqual(expect.arrayContaining([expect.stringMatching(new RegExp(`^${dead}\\.mount\\.`))]));
    expect(await entries(staging())).toEqual(expect.arrayContaining([expect.stringMatching(new RegExp(`^${dead}\\.install\\.`))]));

    const next = await project.run('build');
    expect(next.exitCode, next.stderr + next.stdout).toBe(0);
    const said = next.stderr;
    expect(said).toMatch(new RegExp(`^removed the lock of a dead run \\(pid ${dead}, build, since `, 'm'));
    expect(said).toMatch(new RegExp(`^cleanup: exported pool ${POOL} left imported by a dead run$`, 'm'));
    // Exporting the pool takes the datasets' mounts, and with them the binds on top, away; anything
    // still mounted after that is unmounted and reported ("cleanup: unmounted ... left by a dead run").
    for (const line of said.split('\n').filter((l) => l.startsWith('cleanup: unmounted '))) {
      expect(line).toMatch(new RegExp(`^cleanup: unmounted ${work()}/${dead}\\.mount\\.\\w+/root(/\\S+)? left by a dead run$`));
    }
    expect(said).toMatch(new RegExp(`^cleanup: removed work/${dead}\\.mount\\.\\w+ left by dead run ${dead}$`, 'm'));
    expect(said).toMatch(new RegExp(`^cleanup: removed staging/${dead}\\.install\\.\\w+ left by dead run ${dead}$`, 'm'));
    expect(said).not.toMatch(/could not|left .* in place/);
    // resumed: the checkpoints before the transaction are reused, the transaction runs again
    expect(next.stdout).toMatch(/^↺ create-pool: cached/m);
    expect(next.stdout).toMatch(/^↺ partition: cached/m);
    expect(next.stdout).toMatch(/^✔ install: ran/m);
    expect(next.stdout).toMatch(/^✔ export-pool: ran/m);

    expect(await leftovers(project.dir, [POOL])).toEqual({ pools: [], mounts: [], loops: [] });
    expect(await entries(work())).toEqual([]);
    expect(await entries(staging())).toEqual([]);
    expect(await entries(project.cache)).not.toContain('lock');
    const plan = await project.run('plan');
    expect(plan.stdout).toMatch(/^0 of \d+ task\(s\) would run$/m);
  });

  it('inside create-pool: the next run (--json) exports the half-made pool, removes its staging folder, and resumes after create-disks', async () => {
    await project.configure({ rootSize: 136 }); // a new root disk: create-pool must run again
    const dead = await killInside('zfs', 'create');

    // zpool create is done, the datasets are not: the pool is imported from the dead run's staging folder.
    expect(await importedPools()).toContain(POOL);
    expect(await entries(staging())).toEqual(expect.arrayContaining([expect.stringMatching(new RegExp(`^${dead}\\.create-pool\\.`))]));
    const plan = await project.run('plan');
    expect(plan.stdout).toMatch(/^create-disks:root\s+fresh/m); // published before the kill
    expect(plan.stdout).toMatch(/^create-pool\s+run/m); // nothing half-made was published

    const next = await project.build();
    expect(next.exitCode, next.stdout).toBe(0);
    const notices = jsonEvents(next.stdout)
      .filter((e) => e.type === 'notice')
      .map((e) => e.message ?? '');
    expect(notices).toEqual(
      expect.arrayContaining([
        expect.stringMatching(new RegExp(`^removed the lock of a dead run \\(pid ${dead}, build, `)),
        `cleanup: exported pool ${POOL} left imported by a dead run`,
        expect.stringMatching(new RegExp(`^cleanup: removed staging/${dead}\\.create-pool\\.\\w+ left by dead run ${dead}$`)),
      ]),
    );
    expect(notices.filter((n) => /could not|in place/.test(n))).toEqual([]);
    expect(next.stderr).toBe(''); // under --json the cleanup lines are notices on stdout
    expect(next.statuses['create-disks:root']).toBe('cached');
    expect(next.statuses['create-disks:boot']).toBe('cached');
    expect(next.statuses['partition']).toBe('cached');
    expect(withStatus(next.statuses, 'ran')).toEqual(expect.arrayContaining(['create-pool', 'install', 'export-pool', 'convert:root']));
    expect(withStatus(next.statuses, 'failed')).toEqual([]);

    expect(await leftovers(project.dir, [POOL])).toEqual({ pools: [], mounts: [], loops: [] });
    expect(await entries(staging())).toEqual([]);
    expect(await entries(work())).toEqual([]);
  });

  it("of a shell whose command keeps the pool busy: the next run keeps its folder (which holds the pool's disk) until the pool can be exported", async () => {
    const marker = `sleep 317.${process.pid}`;
    const shell = started.track(project.start('shell', 'install', '--', 'sh', '-c', `cd "$IMAGE_ROOT" && exec ${marker}`));
    // anchored: the runner's own command line holds the marker too
    await until(async () => (await execa('pgrep', ['-f', `^${marker}`], { reject: false })).exitCode === 0, 'the command inside the shell');
    const dead = shell.pid!;
    deadRuns.push(dead);
    shell.kill('SIGKILL');
    // not `await shell`: the command inside still holds the runner's output pipe
    await until(async () => !(await running(dead)), 'the shell to die', 10_000);
    try {
      const kept = await project.run('gc');
      expect(kept.exitCode, kept.stderr).toBe(0);
      expect(kept.stderr).toMatch(new RegExp(`^cleanup: could not export pool ${POOL} .*; export it by hand$`, 'm'));
      expect(kept.stderr).toMatch(new RegExp(`^cleanup: left \\S+/work/${dead}\\.shell\\.\\w+ in place: pool ${POOL} is still imported from it \\(release it by hand, then rerun\\)$`, 'm'));
      expect(await importedPools()).toContain(POOL);
      const [folder] = (await entries(work())).filter((name) => name.startsWith(`${dead}.shell.`));
      expect(existsSync(path.join(work(), folder!, 'root.raw'))).toBe(true);
    } finally {
      await execa('pkill', ['-KILL', '-f', `^${marker}`], { reject: false });
    }
    await until(async () => (await execa('pgrep', ['-f', `^${marker}`], { reject: false })).exitCode === 1, 'the command to die', 10_000);
    await shell;
    const cleaned = await project.run('gc');
    expect(cleaned.stderr).toMatch(new RegExp(`^cleanup: exported pool ${POOL} left imported by a dead run$`, 'm'));
    expect(cleaned.stderr).toMatch(new RegExp(`^cleanup: removed work/${dead}\\.shell\\.\\w+ left by dead run ${dead}$`, 'm'));
    expect(await importedPools()).not.toContain(POOL);
    expect(await entries(work())).toEqual([]);
    expect(await leftovers(project.dir, [POOL])).toEqual({ pools: [], mounts: [], loops: [] });
  });

  it('a zfs-fuse daemon the killed run started is stopped by the next build once nobody uses it', async (ctx) => {
    // Only when this file's daemon was the only one: another suite's daemon or ZFS user would keep it running.
    await daemon?.stop();
    daemon = undefined;
    await until(async () => (await zfsFuseDaemons()).length === 0, 'no zfs-fuse daemon', 20_000).catch(() => undefined);
    if ((await zfsFuseDaemons()).length > 0 || (await otherZfsUsers()).length > 0) ctx.skip();

    await execa('sh', ['-c', `echo '# install once more' >> '${path.join(project.dir, 'configuration.nix')}'`]);
    const dead = await killInside('chroot', 'ANY');
    const left = await zfsFuseDaemons();
    expect(left).toHaveLength(1); // the dead run's daemon outlives it
    expect(await zfsFuseStarter()).toBe(dead);
    const pidDir = path.dirname((await readFile(ZFS_FUSE_STARTER_FILE, 'utf8')).split('\n')[1]!);
    expect(path.basename(pidDir)).toMatch(/^zfs-fuse-/);
    expect(await entries(pidDir)).toEqual(['zfs-fuse.pid']);

    const next = await project.run('build');
    expect(next.exitCode, next.stderr + next.stdout).toBe(0);
    expect(next.stderr).toMatch(new RegExp(`^cleanup: exported pool ${POOL} left imported by a dead run$`, 'm'));
    // The next build used that daemon and, the last one out with its starter dead, stopped it, and says so
    // in its notes (at the run's end no task's log is open to take the line).
    expect(next.stdout).toMatch(new RegExp(`^stopped the zfs-fuse daemon a finished build had started \\(pid ${left[0]}\\)$`, 'm'));
    expect(await zfsFuseDaemons()).toEqual([]);
    expect(await zfsFuseStarter()).toBeUndefined();
    expect(existsSync(pidDir)).toBe(false); // its pid file's folder went with it
    expect(await leftovers(project.dir, [POOL])).toEqual({ pools: [], mounts: [], loops: [] });
  });
});

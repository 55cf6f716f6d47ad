// Real builds stopped inside a stage with real signals: nothing left imported, mounted or
// attached, nothing published, and the next run resumes from the last checkpoint.
import { execa } from 'execa';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { imageProject, ran, type ImageProject } from '../helpers/image.ts';
import { cleanupSteps, jsonEvents, uniquePool, zfsFuseDaemons } from '../helpers/reliability.ts';
import { until } from '../helpers/wait.ts';
import { makeShims, type Shims } from '../helpers/shims.ts';

const POOL = uniquePool('rint');
let scratch: string | undefined;
let project: ImageProject;
let shims: Shims;
let daemonsBefore: number;

beforeAll(async () => {
  scratch = await mkdtemp(path.join(tmpdir(), 'rel-int-'));
  shims = await makeShims(scratch, ['zfs-fuse', 'zfs', 'zpool', 'qemu-img', 'chroot']);
  project = await imageProject(POOL, { PATH: shims.path });
  daemonsBefore = (await zfsFuseDaemons()).length;
  const first = await project.build();
  expect(first.exitCode, first.stderr).toBe(0);
});
afterAll(async () => {
  await cleanupSteps(
    () => shims?.unpause(),
    () => project?.cleanup(), // ends a build a failed test left paused, releases its mounts and pool
    () => scratch && rm(scratch, { recursive: true, force: true }),
  );
});

/** What a stopped build must not leave behind. */
async function expectNothingLeft(): Promise<void> {
  const mounts = await readFile('/proc/mounts', 'utf8');
  expect(mounts).not.toContain(project.dir);
  const pools = await execa('zpool', ['list', '-H', '-o', 'name'], { reject: false });
  expect(pools.stdout.split('\n')).not.toContain(POOL);
  const loops = await execa('losetup', ['--list', '--noheadings', '--output', 'BACK-FILE'], { reject: false });
  expect(loops.stdout).not.toContain(project.dir);
  expect(await readdir(path.join(project.cache, 'staging')).catch(() => [])).toEqual([]);
  expect(await readdir(path.join(project.cache, 'work')).catch(() => [])).toEqual([]);
  // a daemon the build started is stopped again
  expect((await zfsFuseDaemons()).length).toBeLessThanOrEqual(daemonsBefore);
}

/** Starts a build that will pause in `tool verb`, then sends `signal` once it is there. */
async function interrupt(tool: string, verb: string, signal: NodeJS.Signals) {
  await shims.pause(tool, verb);
  const child = project.start('build');
  await shims.waitPaused();
  child.kill(signal);
  // The cleanup may run the same command again (zpool export): it must not pause a second time.
  await shims.unpause();
  return await child;
}

describe('Ctrl-C and SIGTERM inside a stage', () => {
  it('inside create-pool: exit 1, pool exported, nothing published; the rerun resumes', async () => {
    await project.configure({ rootSize: 136 }); // a new root disk: create-pool must run
    const stopped = await interrupt('zfs', 'create', 'SIGINT');
    expect(stopped.exitCode).toBe(1);
    expect(stopped.stdout).toMatch(/create-pool: failed .*interrupted/);
    expect(stopped.stdout).toMatch(/^interrupted in .*: /m); // the summary tells an interrupt from a failure
    await expectNothingLeft();
    const plan = await project.run('plan');
    expect(plan.stdout).toMatch(/^create-disks:root\s+fresh/m); // published before the interruption
    expect(plan.stdout).toMatch(/^create-pool\s+run/m);
    const resumed = await project.build();
    expect(resumed.exitCode, resumed.stderr).toBe(0);
    expect(resumed.statuses['create-disks:root']).toBe('cached');
    expect(resumed.statuses['create-pool']).toBe('ran');
  });

  it('inside install: exit 1, datasets unmounted, /dev unbound, pool exported; the rerun resumes', async () => {
    await execa('sh', ['-c', `echo '# install again' >> ${path.join(project.dir, 'configuration.nix')}`]);
    const stopped = await interrupt('chroot', 'ANY', 'SIGINT');
    expect(stopped.exitCode).toBe(1);
    expect(stopped.stdout).toMatch(/install: failed .*interrupted/);
    await expectNothingLeft();
    const resumed = await project.build();
    expect(resumed.exitCode, resumed.stderr).toBe(0);
    expect(resumed.statuses['create-pool']).toBe('cached');
    expect(ran(resumed.statuses)).toEqual(expect.arrayContaining(['install', 'export-pool']));
  });

  it('inside export-pool (SIGTERM): exit 1, nothing published; the rerun resumes from create-pool', async () => {
    await execa('sh', ['-c', `echo '# export again' >> ${path.join(project.dir, 'configuration.nix')}`]);
    const stopped = await interrupt('zpool', 'export', 'SIGTERM');
    expect(stopped.exitCode).toBe(1);
    await expectNothingLeft();
    const resumed = await project.build();
    expect(resumed.exitCode, resumed.stderr).toBe(0);
    expect(resumed.statuses['create-pool']).toBe('cached');
    expect(ran(resumed.statuses)).toContain('export-pool');
  });

  it('inside convert: exit 1, no partial file in the output folder; the rerun converts', async () => {
    await project.configure({ format: 'vdi' });
    const stopped = await interrupt('qemu-img', 'convert', 'SIGINT');
    expect(stopped.exitCode).toBe(1);
    await expectNothingLeft();
    expect((await readdir(project.out)).filter((n) => n.endsWith('.vdi') || n.includes('partial'))).toEqual([]);
    const resumed = await project.build();
    expect(resumed.exitCode, resumed.stderr).toBe(0);
    expect(ran(resumed.statuses).sort()).toEqual(['convert:boot', 'convert:root', 'post-vm']);
  });

  it('inside post-vm, after both converts: the output folder keeps the previous images and image-info.json, which match', async () => {
    const before = await outputSet();
    expect(before.matches).toBe(true);
    await execa('sh', ['-c', `echo '# a new root disk' >> ${path.join(project.dir, 'configuration.nix')}`]);
    const stopped = await interrupt('qemu-img', 'info', 'SIGINT');
    expect(stopped.exitCode).toBe(1);
    expect(stopped.stdout).toMatch(/^✔ convert:root: ran/m);
    await expectNothingLeft();
    expect(await outputSet()).toEqual(before);
    const resumed = await project.build();
    expect(resumed.exitCode, resumed.stderr).toBe(0);
    const after = await outputSet();
    expect(after.matches).toBe(true);
    expect(after.recorded.root).not.toBe(before.recorded.root);
  });

  it('while convert hashes its output: stops inside the hash instead of reading the disk to its end', async () => {
    const { rootSize, format } = JSON.parse(await readFile(project.configFile, 'utf8')) as Record<string, unknown>;
    // a large sparse raw disk: its sparse copy is quick, its hash reads 32 GiB (20 s or more of SHA-256)
    await project.configure({ rootSize: 32768, format: 'raw' });
    let stopped;
    try {
      const child = project.start('build');
      let stdout = '';
      child.stdout?.on('data', (chunk: Buffer | string) => {
        stdout += chunk.toString();
      });
      await until(() => /^ {2}convert:root: \d+% sha256 of the root disk$/m.test(stdout), 'convert:root to hash its output', 150_000);
      child.kill('SIGINT');
      stopped = await child;
    } finally {
      await project.configure({ rootSize, format }); // the later tests build the usual image
    }
    expect(stopped.exitCode).toBe(1);
    expect(stopped.stdout).toMatch(/convert:root: failed .*interrupted/);
    // progress is shown every 5 s and always at 100%: a hash that went on to the end would say so
    expect(stopped.stdout).not.toMatch(/convert:root: 100% sha256/);
    await expectNothingLeft();
  });
});

describe('a build paused inside a stage', () => {
  /** Starts `build --json` that pauses in `tool verb`; resolves once it is there, with its events so far. */
  async function pausedBuild(tool: string, verb: string) {
    await shims.pause(tool, verb);
    const child = project.start('build', '--json');
    let stdout = '';
    child.stdout?.on('data', (chunk: Buffer | string) => {
      stdout += chunk.toString();
    });
    await shims.waitPaused();
    // only complete lines: a chunk may end mid-event
    const events = () => jsonEvents(stdout.slice(0, stdout.lastIndexOf('\n') + 1));
    return { child, events };
  }

  it('the boot branch runs to its end while create-pool is held inside zpool create', async () => {
    await project.configure({ bootSize: 44, rootSize: 140 }); // both branches start from new disks
    const { child, events } = await pausedBuild('zpool', 'create');
    try {
      const status = (id: string) => events().filter((e) => e.type === 'task' && e.id === id).map((e) => e.status);
      await until(() => status('partition').includes('ran'), 'partition to finish while create-pool waits');
      expect(status('create-pool')).toEqual(['started']);
    } finally {
      await shims.unpause();
    }
    const result = await child;
    expect(result.exitCode, String(result.stderr)).toBe(0);
    await expectNothingLeft();
  });

  it('install runs its chroot with /dev, /proc and /sys bound into the image root, and unbinds them', async () => {
    await execa('sh', ['-c', `echo '# bind check' >> ${path.join(project.dir, 'configuration.nix')}`]);
    const { child } = await pausedBuild('chroot', 'ANY');
    let mounts: string[][];
    try {
      // /proc/mounts fields: source, mount point, type, ...
      mounts = (await readFile('/proc/mounts', 'utf8')).split('\n').map((line) => line.split(' '));
    } finally {
      await shims.unpause();
    }
    const bound = mounts.filter(([, at]) => at?.startsWith(project.dir) && /\/(dev|proc|sys)$/.test(at)).map(([, at, type]) => `${path.basename(at!)} ${type}`);
    // the host's own file systems, as bind mounts show them
    const host = ['dev', 'proc', 'sys'].map((name) => `${name} ${mounts.find(([, at]) => at === `/${name}`)?.[2]}`);
    expect(bound.sort()).toEqual(host);
    const result = await child;
    expect(result.exitCode, String(result.stderr)).toBe(0);
    await expectNothingLeft();
  });
});

/** The sha256 image-info.json records for each disk, and whether the files in the output folder have them. */
async function outputSet(): Promise<{ recorded: Record<string, string>; matches: boolean }> {
  const info = JSON.parse(await readFile(path.join(project.out, 'image-info.json'), 'utf8')) as { disks: Record<string, { file: string; sha256: string }> };
  const recorded: Record<string, string> = {};
  let matches = true;
  for (const [disk, { file, sha256 }] of Object.entries(info.disks)) {
    recorded[disk] = sha256;
    const actual = (await execa('sha256sum', [path.join(project.out, file)])).stdout.split(' ')[0];
    if (actual !== sha256) matches = false;
  }
  return { recorded, matches };
}

// kill -9 inside a stage, and a stage that fails: the next run cleans up, says what it cleaned, and resumes.
import { execa } from 'execa';
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEMO, imageProject, ran, type ImageProject } from '../helpers/image.ts';
import { makeShims, type Shims } from '../helpers/shims.ts';
import { alive, waitFor } from '../helpers/toy.ts';

const POOL = 'ktank';
let project: ImageProject;
let shims: Shims;

beforeAll(async () => {
  const scratch = await import('node:fs/promises').then((fs) => fs.mkdtemp('/tmp/shims-'));
  shims = await makeShims(scratch, ['zfs-fuse', 'zfs', 'zpool', 'chroot']);
  project = await imageProject(POOL, { PATH: shims.path });
  const first = await project.build();
  expect(first.exitCode, first.stderr).toBe(0);
});
afterAll(async () => {
  await shims.unpause();
  await execa('zpool', ['export', POOL], { reject: false });
  await project.cleanup();
  await execa('rm', ['-rf', path.dirname(shims.bin)]);
});

async function nothingLeft(): Promise<void> {
  expect(await readFile('/proc/mounts', 'utf8')).not.toContain(project.dir);
  expect((await execa('zpool', ['list', '-H', '-o', 'name'], { reject: false })).stdout.split('\n')).not.toContain(POOL);
}

describe('kill -9 of the runner', () => {
  it('inside install: the next run exports the pool, unmounts, sweeps the folders and the lock, says so, and resumes', async () => {
    await execa('sh', ['-c', `echo '# again' >> ${path.join(project.dir, 'configuration.nix')}`]);
    await shims.pause('chroot', 'ANY');
    const child = project.start('build');
    const shim = await shims.waitPaused();
    child.kill('SIGKILL');
    await child;
    // The paused command outlives the runner (as after a crash); released, it finishes on its own.
    await shims.unpause();
    await waitFor(async () => !alive(shim), 30_000);
    // What the dead run left: the pool imported, datasets and /dev mounted under its work folder, its lock.
    expect((await execa('zpool', ['list', '-H', '-o', 'name'])).stdout.split('\n')).toContain(POOL);
    expect(await readFile('/proc/mounts', 'utf8')).toContain(path.join(project.cache, 'work'));
    const next = await project.run('build');
    expect(next.exitCode, next.stderr + next.stdout).toBe(0);
    expect(next.stderr).toMatch(/removed the lock of a dead run \(pid \d+, build/);
    expect(next.stderr).toMatch(new RegExp(`cleanup: exported pool ${POOL} left imported by a dead run`));
    expect(next.stderr).toMatch(/cleanup: removed work\/\d+\.mount\.\w+ left by dead run \d+/);
    expect(next.stdout).toMatch(/create-pool: cached/);
    expect(next.stdout).toMatch(/install: ran/);
    await nothingLeft();
    expect(await readdir(path.join(project.cache, 'work'))).toEqual([]);
  });
});

describe('a failing stage', () => {
  it('switch-to-configuration exits 1: stage, command, status and log tail; nothing left; the fix resumes', async () => {
    const failing = (await execa('nix-build', [DEMO.system, '--arg', 'failSwitch', 'true', '--no-out-link', '--option', 'substituters', '', '--option', 'sandbox', 'false'])).stdout.trim();
    await project.configure({ system: { toplevel: failing } });
    const failed = await project.run('build');
    expect(failed.exitCode).toBe(1);
    expect(failed.stdout).toMatch(/✖ install: failed .*chroot .*\/bin\/switch-to-configuration boot failed with exit status 1/);
    expect(failed.stdout).toMatch(/last lines of .*logs\/install\/.*\.log:/);
    expect(failed.stdout).toMatch(/\| .*switch-to-configuration/);
    expect(failed.stdout).toMatch(/export-pool: skipped \(dependency install failed\)/);
    await nothingLeft();
    const tail = (await project.run('logs', 'install')).stdout;
    expect(tail).toMatch(/switch-to-configuration boot/);
    const fixed = (await execa('nix-build', [DEMO.system, '--argstr', 'label', 'fixed', '--no-out-link', '--option', 'substituters', '', '--option', 'sandbox', 'false'])).stdout.trim();
    await project.configure({ system: { toplevel: fixed } });
    const resumed = await project.build();
    expect(resumed.exitCode, resumed.stderr).toBe(0);
    for (const id of ['create-disks:boot', 'create-disks:root', 'partition', 'create-pool']) expect(resumed.statuses[id]).toBe('cached');
    expect(ran(resumed.statuses)).toEqual(expect.arrayContaining(['install', 'export-pool']));
  });

  it('a root disk too small for the closure fails early in install with the numbers, leaving nothing', async () => {
    await project.configure({ rootSize: 64, datasets: { [`${POOL}/root`]: { mount: '/' } }, contents: [] });
    const big = path.join(project.dir, 'big.bin');
    await execa('dd', ['if=/dev/urandom', `of=${big}`, 'bs=1M', 'count=80', 'status=none']);
    await project.configure({ contents: [{ source: big, target: '/big.bin' }] });
    const failed = await project.run('build');
    expect(failed.exitCode).toBe(1);
    expect(failed.stdout).toMatch(/✖ install: failed .*not enough space for contents\[0\] \(.*big\.bin\) in .*: needs 80\.0 MiB, \d+(\.\d)? MiB free/);
    expect(failed.stdout).toMatch(/mount: ran .*released/); // unmounted and exported after the failure
    await nothingLeft();
  });
});

describe('host safety', () => {
  it('refuses a pool name already imported on the host and leaves that pool alone', async () => {
    const vdev = path.join(project.dir, 'host.raw');
    await execa('truncate', ['-s', '128M', vdev]);
    const host = 'khost';
    const { startZfsFuse } = await import('../helpers/image.ts');
    const daemon = await startZfsFuse(project.dir);
    try {
      await execa('zpool', ['create', host, vdev]);
      await project.configure({ rootPoolName: host, rootSize: 128, contents: [], datasets: { [`${host}/root`]: { mount: '/' } } });
      const refused = await project.run('build');
      expect(refused.exitCode).not.toBe(0);
      expect(refused.stdout + refused.stderr).toMatch(new RegExp(`a pool named '${host}' is already imported on this host`));
      expect((await execa('zpool', ['list', '-H', '-o', 'name,health', host])).stdout).toMatch(/ONLINE/);
    } finally {
      await execa('zpool', ['export', host], { reject: false });
      await daemon.stop();
    }
  });
});

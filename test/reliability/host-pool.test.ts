// Host safety: a pool of the host that has the image's rootPoolName. zfs-fuse has no temporary
// pool names, so a build must refuse, naming the pool, and leave the host's pool imported and
// untouched: in create-pool, in mount (import of a cached checkpoint), and in the sweep of a
// dead run's leftovers.
import { execa } from 'execa';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { imageProject, startZfsFuse, type ImageProject } from '../helpers/image.ts';
import {
  cleanupSteps,
  entries,
  importedPools,
  leftovers,
  uniquePool,
} from '../helpers/reliability.ts';

const POOL = uniquePool('relhost');
const MARKER = `host data ${POOL}\n`;
let scratch: string;
let daemon: { stop(): Promise<void> } | undefined;
let altroot: string;
let guid: string;
let built: ImageProject; // built with POOL before the host had a pool of that name
let fresh: ImageProject; // never built

beforeAll(async () => {
  scratch = await mkdtemp(path.join(tmpdir(), 'rel-host-'));
  daemon = await startZfsFuse(scratch);
  built = await imageProject(POOL);
  fresh = await imageProject(POOL);
  const first = await built.build();
  expect(first.exitCode, first.stdout).toBe(0);

  // The host's pool: a file vdev, mounted under a temporary altroot (never on the host's /), with a file in it.
  const vdev = path.join(scratch, 'host-vdev.raw');
  altroot = path.join(scratch, 'alt');
  await mkdir(altroot);
  await execa('truncate', ['-s', '96M', vdev]);
  await execa('zpool', ['create', '-R', altroot, POOL, vdev]);
  await writeFile(await markerFile(), MARKER);
  guid = await poolGuid();
});

afterAll(async () => {
  await cleanupSteps(
    // The host's pool, or an image's pool of the same name a failed build left imported: the name is ours alone.
    () => execa('zpool', ['export', POOL], { reject: false }),
    ...[built, fresh].filter(Boolean).map((project) => () => project.cleanup()),
    () => daemon?.stop(),
    () => rm(scratch, { recursive: true, force: true }),
  );
});

/** A file in the host pool's root dataset (zfs-fuse mounts it at the altroot itself). */
async function markerFile(): Promise<string> {
  const mountpoint = (await execa('zfs', ['get', '-H', '-o', 'value', 'mountpoint', POOL])).stdout.trim();
  expect(mountpoint.startsWith(altroot)).toBe(true);
  return path.join(mountpoint, 'marker');
}

async function poolGuid(): Promise<string> {
  // zfs-fuse's `zpool get` has no -H or -o: NAME PROPERTY VALUE SOURCE
  const row = (await execa('zpool', ['get', 'guid', POOL])).stdout.split('\n')[1] ?? '';
  const value = row.trim().split(/\s+/)[2] ?? '';
  expect(value).toMatch(/^\d+$/);
  return value;
}

/** The host's pool is still imported, healthy, the same pool, with its dataset mounted and its file intact. */
async function expectHostPoolUntouched(): Promise<void> {
  expect(await importedPools()).toContain(POOL);
  expect((await execa('zpool', ['list', '-H', '-o', 'health', POOL])).stdout.trim()).toBe('ONLINE');
  expect(await poolGuid()).toBe(guid);
  expect((await execa('zfs', ['get', '-H', '-o', 'value', 'mounted', POOL])).stdout.trim()).toBe('yes');
  expect(await readFile(await markerFile(), 'utf8')).toBe(MARKER);
  expect((await execa('zpool', ['status', POOL])).stdout).toContain(path.join(scratch, 'host-vdev.raw'));
}

const refusal = new RegExp(
  `a pool named '${POOL}' is already imported on this host, and zfs-fuse cannot import under a temporary name; export it \\(zpool export ${POOL}\\) or choose another rootPoolName`,
);

describe('a pool of the same name imported on the host', () => {
  it('create-pool refuses, naming the pool, and leaves the host pool alone', async () => {
    const result = await fresh.run('build');
    expect(result.exitCode, result.stdout + result.stderr).toBe(1);
    expect(result.stdout).toMatch(new RegExp(`^✖ create-pool: failed in .*\\(${refusal.source}\\)$`, 'm'));
    expect(result.stdout).toMatch(/^↷ install: skipped/m);
    await expectHostPoolUntouched();
    expect(await leftovers(fresh.dir, [])).toEqual({ pools: [], mounts: [], loops: [] });
    expect(await entries(path.join(fresh.cache, 'staging'))).toEqual([]);
  });

  it('mount refuses to import a cached checkpoint over it; the sweep of a dead run does not export it', async () => {
    // A dead run's working folder (a pid no process has): the sweeper looks at every imported pool for it.
    const deadPid = 2147483646;
    await mkdir(path.join(built.cache, 'work', `${deadPid}.mount.fake`, 'root'), { recursive: true });
    await execa('sh', ['-c', `echo '# again' >> '${path.join(built.dir, 'configuration.nix')}'`]); // install must run
    const result = await built.run('build');
    expect(result.exitCode, result.stdout + result.stderr).toBe(1);
    expect(result.stderr).toMatch(new RegExp(`^cleanup: removed work/${deadPid}\\.mount\\.fake left by dead run ${deadPid}$`, 'm'));
    expect(result.stderr).not.toMatch(/exported pool/);
    expect(result.stdout).toMatch(/^↺ create-pool: cached/m);
    expect(result.stdout).toMatch(new RegExp(`^✖ mount: failed in .*\\(${refusal.source}\\)$`, 'm'));
    expect(result.stdout).toMatch(/^↷ install: skipped/m);
    await expectHostPoolUntouched();
    expect(await leftovers(built.dir, [])).toEqual({ pools: [], mounts: [], loops: [] });
    expect(await entries(path.join(built.cache, 'work'))).toEqual([]);
  });

  it('once the host pool is exported, the same build succeeds and the host pool imports again unchanged', async () => {
    await execa('zpool', ['export', POOL]);
    const result = await built.build();
    expect(result.exitCode, result.stdout).toBe(0);
    expect(result.statuses['create-pool']).toBe('cached');
    expect(result.statuses['install']).toBe('ran');
    expect(await importedPools()).not.toContain(POOL);
    await execa('zpool', ['import', '-R', altroot, '-d', scratch, POOL]);
      await expectHostPoolUntouched();
  });
});

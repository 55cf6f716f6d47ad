// A damaged cache under a real image build: a truncated checkpoint disk, a deleted checkpoint,
// a corrupt index entry, an image written through the output folder's hard link, a missing log
// folder. Each damage is reported, is a miss for the affected stage only (which runs again),
// and the build succeeds; `verify` exits 1 while something is damaged and 0 once it is intact.
import cacache from 'cacache';
import { execa } from 'execa';
import { mkdtemp, open, readFile, rm, stat, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { imageProject, startZfsFuse, type ImageProject } from '../helpers/image.ts';
import {
  cleanupSteps,
  entries,
  finalEvents,
  jsonEvents,
  leftovers,
  uniquePool,
  withStatus,
} from '../helpers/reliability.ts';

const POOL = uniquePool('reldmg');
const ENTRIES = 11; // every task but the mount resource publishes one entry
let scratch: string;
let daemon: { stop(): Promise<void> } | undefined;
let project: ImageProject;
/** Fingerprint of each task's current entry. */
let fingerprint: Record<string, string> = {};

beforeAll(async () => {
  scratch = await mkdtemp(path.join(tmpdir(), 'rel-dmg-'));
  daemon = await startZfsFuse(scratch);
  project = await imageProject(POOL);
  await project.configure({ rootSize: 64 }); // verify hashes every disk: keep them small
  const first = await project.build();
  expect(first.exitCode, first.stdout).toBe(0);
  remember(first.stdout);
  // The first verify of an intact cache: everything passes, and disks get their content baseline.
  const verified = await project.run('verify');
  expect(verified.exitCode, verified.stdout).toBe(0);
  expect(verified.stdout).toMatch(/^index: \d+ content item\(s\) rehashed, 0 bad removed$/m);
  expect(verified.stdout).toMatch(new RegExp(`^${ENTRIES} entries intact, 0 damaged$`, 'm'));
  expect(verified.stdout).not.toMatch(/damaged:/);
});

afterAll(async () => {
  await cleanupSteps(
    () => project?.cleanup(),
    () => daemon?.stop(),
    () => rm(scratch, { recursive: true, force: true }),
  );
});

function remember(stdout: string): void {
  for (const [id, event] of Object.entries(finalEvents(stdout))) if (event.fingerprint) fingerprint[id] = event.fingerprint;
}

const artifact = (id: string, name: string): string => path.join(project.cache, 'artifacts', fingerprint[id]!, name);
const short = (id: string): string => fingerprint[id]!.slice(0, 12);

/** A build with --json: its statuses, the damage notices, and the fingerprints it used. */
async function rebuild() {
  const result = await project.build();
  expect(result.exitCode, result.stdout).toBe(0);
  remember(result.stdout);
  const warnings = jsonEvents(result.stdout)
    .filter((e) => e.type === 'notice' && /damaged/.test(e.message ?? ''))
    .map((e) => e.message!);
  expect(await leftovers(project.dir, [POOL])).toEqual({ pools: [], mounts: [], loops: [] });
  return { ...result, warnings, ran: withStatus(result.statuses, 'ran') };
}

async function verify(): Promise<{ exitCode: number; stdout: string }> {
  const result = await project.run('verify');
  return { exitCode: result.exitCode, stdout: result.stdout };
}

async function expectIntact(entries = ENTRIES): Promise<void> {
  const verified = await verify();
  expect(verified.exitCode, verified.stdout).toBe(0);
  expect(verified.stdout).toMatch(new RegExp(`^${entries} entries intact, 0 damaged$`, 'm'));
}

describe('a damaged cache under an image build', () => {
  it('a truncated checkpoint disk (create-pool root.raw): verify reports it; the build reruns create-pool only', async () => {
    const disk = artifact('create-pool', 'root.raw');
    const size = (await stat(disk)).size;
    await truncate(disk, 1024 * 1024);
    const verified = await verify();
    expect(verified.exitCode).toBe(1);
    expect(verified.stdout).toContain(
      `damaged: create-pool ${short('create-pool')}: artifact "root.raw": file has size 1048576, published with ${size} (a miss: the next build redoes it)`,
    );
    expect(verified.stdout).toMatch(new RegExp(`^${ENTRIES - 1} entries intact, 1 damaged$`, 'm'));

    const result = await rebuild();
    expect(result.warnings).toEqual([`create-pool: cache entry damaged (artifact "root.raw": file has size 1048576, published with ${size}); rebuilding it`]);
    expect(result.ran).toEqual(['create-pool']); // same fingerprint: what depends on it stays fresh
    expect(result.statuses['create-disks:root']).toBe('cached');
    expect((await stat(artifact('create-pool', 'root.raw'))).size).toBe(size);
    await expectIntact();
  });

  it('a deleted checkpoint (export-pool): the mount transaction runs again from create-pool; convert:root stays cached', async () => {
    await rm(path.join(project.cache, 'artifacts', fingerprint['export-pool']!), { recursive: true });
    const result = await rebuild();
    expect(result.warnings).toEqual(['export-pool: cache entry damaged (artifact "root.raw": file is missing); rebuilding it']);
    expect(result.ran).toEqual(['export-pool', 'install', 'mount']);
    expect(result.statuses['create-pool']).toBe('cached');
    expect(result.statuses['convert:root']).toBe('cached');
  });

  const corrupt = async (id: string): Promise<void> => {
    const info = await cacache.get.info(path.join(project.cache, 'index'), `entry/${fingerprint[id]}`);
    expect(info?.path).toContain(`${path.sep}content-v2${path.sep}`);
    await writeFile(info!.path, 'garbage, not the entry\n');
  };

  it('a corrupt index entry (partition): the build reports it and reruns partition only', async () => {
    await corrupt('partition');
    const result = await rebuild();
    expect(result.warnings).toEqual([expect.stringMatching(/^partition: cache entry damaged \(index entry unreadable \(.+\)\); rebuilding it$/)]);
    expect(result.ran).toEqual(['partition']);
    expect(result.statuses['install:esp']).toBe('cached');
  });

  let afterCorruption: { exitCode: number; stdout: string } | undefined;
  it('a corrupt index entry (install:esp) is removed by verify, and the next build redoes install:esp only', async () => {
    await corrupt('install:esp');
    afterCorruption = await verify();
    expect(afterCorruption.stdout).toMatch(/^index: \d+ content item\(s\) rehashed, 1 bad removed$/m);
    const repaired = await rebuild();
    expect(repaired.ran).toEqual(['install:esp']);
    expect(repaired.statuses['convert:boot']).toBe('cached');
    await expectIntact();
  });

  // verify lists the entries before cacache drops those whose content fails its hash.
  it('verify counts that corrupt index entry as damage: exit 1, the entry named', () => {
    expect(afterCorruption).toBeDefined();
    expect(afterCorruption!.exitCode).toBe(1);
    expect(afterCorruption!.stdout).toMatch(new RegExp(`^damaged: (install:esp )?${short('install:esp')}: `, 'm'));
  });

  it('an image written through the output folder: the build sees it and replaces it; with its mtime put back, verify catches it', async () => {
    const image = path.join(project.out, 'nixos.boot.img');
    const scribble = async (): Promise<void> => {
      const handle = await open(image, 'r+');
      await handle.write(Buffer.from('scribbled over by a user'), 0, undefined, 4096);
      await handle.close();
    };
    // 1. written in place (it is a hard link to the cache entry): a stat miss
    await scribble();
    const result = await rebuild();
    expect(result.warnings).toEqual(['convert:boot: cache entry damaged (artifact "nixos.boot.img": file was modified after publishing); rebuilding it']);
    // the copy is of install:esp as the test above rebuilt it (a new FAT serial): a new sha256, so
    // post-vm reruns and image-info.json matches the new file
    expect(result.ran).toEqual(['convert:boot', 'post-vm']);
    const info = JSON.parse(await readFile(path.join(project.out, 'image-info.json'), 'utf8')) as { disks: { boot: { sha256: string } } };
    expect(info.disks.boot.sha256).toBe((await execa('sha256sum', [image])).stdout.split(' ')[0]);
    expect(await readFile(image, 'utf8').then((text) => text.includes('scribbled'))).toBe(false); // replaced
    await expectIntact(ENTRIES + 1); // records the baseline of the new disk; the old post-vm entry stays until gc

    // 2. written with size and mtime as before: only verify's rehash can tell
    const stamp = path.join(scratch, 'timestamp');
    await writeFile(stamp, '');
    await execa('touch', ['-r', image, stamp]); // to the nanosecond, which utimes() from JS may miss by one
    await scribble();
    await execa('touch', ['-r', stamp, image]);
    const quiet = await project.run('plan');
    expect(quiet.stdout).toMatch(/^convert:boot\s+fresh/m);
    const verified = await verify();
    expect(verified.exitCode).toBe(1);
    expect(verified.stdout).toContain(`damaged: convert:boot ${short('convert:boot')}: nixos.boot.img content changed since the first verify; evicted (the next build redoes it)`);
    const after = await rebuild();
    expect(after.ran).toEqual(['convert:boot']); // the same copy of the same install:esp: post-vm stays fresh
    await expectIntact(ENTRIES + 1);
  });

  it('a missing log folder: no entry is damaged by it, `logs` says there is none, and the next run writes logs again', async () => {
    await rm(path.join(project.cache, 'logs'), { recursive: true });
    const logs = await project.run('logs', 'install');
    expect(logs.exitCode).toBe(1);
    expect(logs.stderr).toBe(['install', 'install:esp'].map((id) => `${id}: no log yet (it has not run with this cache folder)`).join('\n'));
    const result = await rebuild();
    expect(result.ran).toEqual([]);
    expect(result.warnings).toEqual([]);
    const forced = await project.run('run', 'partition', '--force');
    expect(forced.exitCode, forced.stdout).toBe(0);
    const written = await project.run('logs', 'partition');
    expect(written.exitCode).toBe(0);
    expect(written.stdout).toMatch(/^==> \S+\/logs\/partition\/\S+\.log <==$/m);
    expect(written.stdout).toMatch(/parted/);
  });

  it('a garbage lock file and a garbage file-hash memo: the lock is removed with a message, the memo rebuilt; nothing reruns', async () => {
    await writeFile(path.join(project.cache, 'lock'), '\0\0garbage');
    await writeFile(path.join(project.cache, 'file-hashes.json'), '{"truncated": ');
    const result = await project.run('build');
    expect(result.exitCode, result.stdout + result.stderr).toBe(0);
    expect(result.stderr).toMatch(/^removed an empty lock file left by a crashed run$/m);
    expect(result.stdout).toMatch(/done in .*: 0 ran, /);
    const memo = JSON.parse(await readFile(path.join(project.cache, 'file-hashes.json'), 'utf8')) as Record<string, unknown>;
    expect(Object.keys(memo)).toContain(path.join(project.dir, 'configuration.nix'));
    expect(await entries(project.cache)).not.toContain('lock');
  });
});

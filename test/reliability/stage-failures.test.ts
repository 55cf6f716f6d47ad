// Stages that fail for real: the system's switch-to-configuration exits 1, and a root disk too
// small for the closure (refused up front, or a real ENOSPC half-way through the copy). Each
// failure names the stage, the command, its status and its log's last lines; nothing stays
// mounted or imported; once fixed, the rebuild reuses every checkpoint the failure did not touch.
import { mkdtemp, readFile, readdir, rm } from 'node:fs/promises';
import { execa } from 'execa';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEMO, imageProject, startZfsFuse, type ImageProject } from '../helpers/image.ts';
import {
  cleanupSteps,
  demoSystem,
  entries,
  fillerSystem,
  finalEvents,
  leftovers,
  uniquePool,
  withStatus,
} from '../helpers/reliability.ts';

let scratch: string;
let daemon: { stop(): Promise<void> } | undefined;
const projects: { project: ImageProject; pool: string }[] = [];

beforeAll(async () => {
  scratch = await mkdtemp(path.join(tmpdir(), 'rel-fail-'));
  daemon = await startZfsFuse(scratch);
});

afterAll(async () => {
  await cleanupSteps(
    ...projects.map(({ project }) => () => project.cleanup()),
    () => daemon?.stop(),
    () => rm(scratch, { recursive: true, force: true }),
  );
});

async function newProject(stem: string): Promise<{ project: ImageProject; pool: string }> {
  const pool = uniquePool(stem);
  const made = { project: await imageProject(pool), pool };
  projects.push(made);
  return made;
}

/** Nothing mounted, imported or attached, and no staging or working folder left. */
async function expectReleased(project: ImageProject, pool: string): Promise<void> {
  expect(await leftovers(project.dir, [pool])).toEqual({ pools: [], mounts: [], loops: [] });
  expect(await entries(path.join(project.cache, 'work'))).toEqual([]);
  expect(await entries(path.join(project.cache, 'staging'))).toEqual([]);
}

describe('switch-to-configuration exits 1', () => {
  it('fails install with the command, its status and the log tail; nothing is left; a working system resumes after create-pool', async () => {
    const { project, pool } = await newProject('relswitch');
    const failing = await demoSystem('--arg', 'failSwitch', 'true');
    await project.configure({ system: { toplevel: failing } });

    const failed = await project.run('build');
    expect(failed.exitCode, failed.stdout + failed.stderr).toBe(1);
    const out = failed.stdout;
    expect(out).toMatch(
      new RegExp(`^✖ install: failed in .*\\(\\S*chroot \\S+/work/\\d+\\.mount\\.\\w+/root ${failing}/bin/switch-to-configuration boot failed with exit status 1\\)$`, 'm'),
    );
    const logLine = /^ {2}last lines of (\S+\/logs\/install\/\S+\.log):$/m.exec(out);
    expect(logLine, out).not.toBeNull();
    expect(out).toMatch(/^ {2}\| switch-to-configuration: failing on purpose \(demo system built with failSwitch\)$/m);
    // the tail is the end of the real log
    const log = await readFile(logLine![1]!, 'utf8');
    expect(log).toContain('switch-to-configuration: failing on purpose');
    expect(log).toContain(`${failing}/activate`); // activate ran before
    // the checkpoints before the transaction were published; what depends on install was skipped
    for (const id of ['create-disks:boot', 'create-disks:root', 'partition', 'create-pool']) expect(out).toMatch(new RegExp(`^✔ ${id}: ran`, 'm'));
    expect(out).toMatch(/^↷ export-pool: skipped \(dependency install failed\)$/m);
    expect(out).toMatch(/^✔ mount: ran .*\(held for 1 of 2 task\(s\), then released\)$/m); // not "for 2": export-pool never ran
    expect(out).toMatch(/^↷ install:esp: skipped \(dependency install failed\)$/m);
    expect(out).toMatch(/^↷ post-vm: skipped/m);
    expect(out).toMatch(/^install\s+failed\s/m); // the summary table
    await expectReleased(project, pool);
    expect(await entries(project.out)).toEqual([]); // nothing placed in the output folder

    // --json carries the same facts in the failure object
    const again = await project.build();
    expect(again.exitCode).toBe(1);
    const install = finalEvents(again.stdout)['install']!;
    expect(install.status).toBe('failed');
    expect(install.failure).toMatchObject({ reason: 'command-failed', exitCode: 1 });
    expect(install.failure!.command).toMatch(new RegExp(`chroot \\S+ ${failing}/bin/switch-to-configuration boot$`));
    expect(install.failure!.tail!.at(-1)).toBe('switch-to-configuration: failing on purpose (demo system built with failSwitch)');
    // a failure is not cached: the transaction runs again (mount acquires and releases), nothing before it does
    expect(withStatus(again.statuses, 'ran')).toEqual(['mount']);
    expect(withStatus(again.statuses, 'failed')).toEqual(['install']);
    await expectReleased(project, pool);

    // back to a working system: the rerun starts from create-pool's checkpoint
    await project.configure({ system: { expression: DEMO.system } });
    const fixed = await project.build();
    expect(fixed.exitCode, fixed.stdout).toBe(0);
    for (const id of ['create-disks:boot', 'create-disks:root', 'partition', 'create-pool']) expect(fixed.statuses[id], id).toBe('cached');
    expect(withStatus(fixed.statuses, 'ran')).toEqual(expect.arrayContaining(['system', 'install', 'export-pool', 'convert:root', 'post-vm']));
    await expectReleased(project, pool);
    expect((await readdir(project.out)).sort()).toEqual(['image-info.json', 'nixos.boot.img', 'nixos.root.img']);
  });
});

describe('a root disk too small for the closure', () => {
  it('is refused up front (100 MiB closure, 64 MiB disk), then a real ENOSPC in cp is reported with its tail; a bigger disk resumes', async () => {
    const { project, pool } = await newProject('relfull');
    // No compression, so the data takes what it weighs; the datasets the closure lands on.
    await project.configure({
      rootSize: 64,
      rootPoolFilesystemProperties: { atime: 'off', compression: 'off', mountpoint: 'legacy' },
      datasets: { [`${pool}/root`]: { mount: '/' }, [`${pool}/nix`]: { mount: '/nix' } },
      contents: [],
      system: { toplevel: await fillerSystem(4, 25 * 1024 * 1024) },
    });

    // 1. 100 MiB of incompressible closure on a 64 MiB disk: install checks the free space before copying.
    const refused = await project.run('build');
    expect(refused.exitCode, refused.stdout + refused.stderr).toBe(1);
    expect(refused.stdout).toMatch(
      /^✖ install: failed in .*\(not enough space for the closure \(\d+ store paths\) in \S+\/root\/nix\/store: needs 10\d\.\d MiB, \d+(\.\d)? MiB free\)$/m,
    );
    for (const id of ['create-disks:boot', 'create-disks:root', 'partition', 'create-pool']) expect(refused.stdout).toMatch(new RegExp(`^✔ ${id}: ran`, 'm'));
    await expectReleased(project, pool);

    // 2. A closure the check lets through that still does not fit: 150 files of 128 KiB + 1 byte
    //    (about 19 MiB by NAR size) take two 128 KiB records each (about 38 MiB) on the disk.
    await project.configure({ system: { toplevel: await fillerSystem(150, 128 * 1024 + 1) } });
    const full = await project.build();
    expect(full.exitCode, full.stdout).toBe(1);
    const install = finalEvents(full.stdout)['install']!;
    expect(install.status).toBe('failed');
    expect(install.failure).toMatchObject({ reason: 'command-failed', exitCode: 1 });
    // one cp for the batch of store paths that holds the data, into the image's store
    expect(install.failure!.command).toMatch(/^cp -a -- (\/nix\/store\/\S+ )*\/nix\/store\/\w+-filler-data-150x131073 (\/nix\/store\/\S+ )*\S+\/root\/nix\/store$/);
    expect(install.failure!.tail!.join('\n')).toMatch(/No space left on device/);
    expect(install.reason).toMatch(/^cp -a -- .* failed with exit status 1$/);
    expect(full.statuses['create-pool']).toBe('cached');
    for (const id of ['export-pool', 'install:esp', 'convert:root', 'convert:boot', 'post-vm']) expect(full.statuses[id], id).toBe('skipped');
    // The full pool cannot even take its mountpoints back; the forced release still exports it.
    await expectReleased(project, pool);

    // 3. A bigger root disk: the boot chain and the system are reused, the root chain is redone.
    await project.configure({ rootSize: 128 });
    const fixed = await project.build();
    expect(fixed.exitCode, fixed.stdout).toBe(0);
    for (const id of ['system', 'create-disks:boot', 'partition']) expect(fixed.statuses[id], id).toBe('cached');
    expect(withStatus(fixed.statuses, 'ran')).toEqual(expect.arrayContaining(['create-disks:root', 'create-pool', 'install', 'export-pool', 'convert:root']));
    await expectReleased(project, pool);
  });
});

describe('contents bigger than the free space, on a compressed dataset', () => {
  it('copies text that compresses to fit (and says it tried), and names the shortfall when random data does not fit', async () => {
    const { project, pool } = await newProject('relgzip');
    // 96 MiB of text on a 64 MiB disk: gzip makes it a few hundred KiB
    await execa('sh', ['-c', `yes 'a line of text that compresses well' | head -c ${96 * 1024 * 1024} > ${path.join(project.dir, 'text.log')}`]);
    await project.configure({
      rootSize: 64,
      datasets: { [`${pool}/root`]: { mount: '/' }, [`${pool}/data`]: { mount: '/data', properties: { compression: 'gzip-1' } } },
      contents: [{ source: 'text.log', target: '/data/text.log' }],
    });
    const fits = await project.build();
    expect(fits.exitCode, fits.stdout + fits.stderr).toBe(0);
    const log = (await project.run('logs', 'install')).stdout;
    expect(log).toMatch(/not enough space for contents\[0\] \(\S+text\.log\) in \S+: needs 96\.0 MiB, [\d.]+ MiB free \(before compression\): copying anyway, since compression=gzip-1 may make it fit/);
    await expectReleased(project, pool);

    // random bytes do not compress: cp runs out of space, and the failure says why
    await execa('head', ['-c', String(96 * 1024 * 1024), '/dev/urandom'], { stdout: { file: path.join(project.dir, 'random.bin') } });
    await project.configure({ contents: [{ source: 'random.bin', target: '/data/random.bin' }] });
    const full = await project.build();
    expect(full.exitCode).toBe(1);
    // still the failed command (for --json), and the last log lines say why
    const install = finalEvents(full.stdout)['install']!;
    expect(install.failure).toMatchObject({ reason: 'command-failed', exitCode: 1 });
    expect(install.failure!.command).toMatch(/^cp -a --remove-destination --no-target-directory -- \S+random\.bin /);
    expect(install.failure!.tail!.join('\n')).toMatch(/No space left on device/);
    expect((await project.run('logs', 'install')).stdout).toMatch(
      /not enough space for contents\[0\] \(\S+random\.bin\) in \S+: needs 96\.0 MiB, [\d.]+ MiB free, and it did not fit with compression=gzip-1 either/,
    );
    await expectReleased(project, pool);
  });
});

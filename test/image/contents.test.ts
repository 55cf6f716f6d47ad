// contents in a real build (real tools, as root, zfs-fuse): modes and owners as asked, and, since the
// build writes into the image from the host, nothing a link in the image points at written on the host.
import { execa } from 'execa';
import { execFileSync } from 'node:child_process';
import { lstat, mkdir, readFile, readlink, readdir, rm, stat, symlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { imageProject, withImportedPool, type ImageProject } from '../helpers/image.ts';
import { uniquePool } from '../helpers/reliability.ts';
import { ROOT } from '../helpers/toy.ts';

const POOL = uniquePool('ltank');
const MOUNTS = { [`${POOL}/root`]: '/', [`${POOL}/root/var`]: '/var', [`${POOL}/nix`]: '/nix', [`${POOL}/home`]: '/home' };

let project: ImageProject;
let hostOpt: string;
let hostFile: string;
beforeAll(async () => {
  project = await imageProject(POOL);
  hostOpt = path.join(project.dir, 'host-opt');
  hostFile = path.join(project.dir, 'host-file');
  await mkdir(hostOpt);
  await writeFile(path.join(hostOpt, 'keep'), 'host folder\n');
  await writeFile(hostFile, 'on the host\n');
  await symlink(hostOpt, path.join(project.dir, 'opt-link'));
  await symlink(hostFile, path.join(project.dir, 'file-link'));
});
afterAll(() => project.cleanup());

describe('contents with modes and owners', () => {
  it('keeps setuid and setgid bits when an owner is set too (chown clears them)', async () => {
    await project.configure({
      contents: [
        { source: 'motd', target: '/usr/bin/tool', mode: '4755', user: '1000', group: '100' },
        { source: 'tree', target: '/srv/shared', mode: '2750', group: '100' },
      ],
    });
    const build = await project.build();
    expect(build.exitCode, build.stderr).toBe(0);
    await withImportedPool(path.join(project.out, 'nixos.root.img'), POOL, MOUNTS, async (root) => {
      const tool = await stat(path.join(root, 'usr/bin/tool'));
      expect({ mode: (tool.mode & 0o7777).toString(8), uid: tool.uid, gid: tool.gid }).toEqual({ mode: '4755', uid: 1000, gid: 100 });
      const shared = await stat(path.join(root, 'srv/shared'));
      expect({ mode: (shared.mode & 0o7777).toString(8), gid: shared.gid }).toEqual({ mode: '2750', gid: 100 });
    });
  });
});

describe('contents with special files', () => {
  it('copies a FIFO, alone and inside a folder, as a FIFO; a change beside it reruns install', async () => {
    execFileSync('mkfifo', [path.join(project.dir, 'pipe'), path.join(project.dir, 'tree/sub/pipe')]);
    await project.configure({
      contents: [
        { source: 'pipe', target: '/run-once/pipe' },
        { source: 'tree', target: '/srv/tree' },
      ],
    });
    const build = await project.build();
    expect(build.exitCode, build.stderr).toBe(0);
    await withImportedPool(path.join(project.out, 'nixos.root.img'), POOL, MOUNTS, async (root) => {
      expect((await lstat(path.join(root, 'run-once/pipe'))).isFIFO()).toBe(true);
      expect((await lstat(path.join(root, 'srv/tree/sub/pipe'))).isFIFO()).toBe(true);
    });
    await writeFile(path.join(project.dir, 'tree/sub/file.txt'), 'changed beside the FIFO\n');
    try {
      const rebuilt = await project.build();
      expect(rebuilt.exitCode, rebuilt.stderr).toBe(0);
      expect(rebuilt.statuses['install']).toBe('ran');
    } finally {
      // the tests below use the same tree
      await writeFile(path.join(project.dir, 'tree/sub/file.txt'), 'nested\n');
      await rm(path.join(project.dir, 'tree/sub/pipe'));
    }
  });
});

describe('contents with symbolic links', () => {
  it('writes through an absolute link as the image resolves it, and replaces a link instead of writing through it', async () => {
    await project.configure({
      contents: [
        { source: 'opt-link', target: '/opt' },
        // /opt is a link to a host path: this lands under that path inside the image
        { source: 'motd', target: '/opt/app/motd', mode: '0600' },
        { source: 'file-link', target: '/srv/tree/sub/file.txt' },
        // merges tree/ over the link above: the link is replaced, the host file untouched
        { source: 'tree', target: '/srv/tree' },
      ],
    });
    const build = await project.build();
    expect(build.exitCode, build.stderr).toBe(0);
    expect(await readdir(hostOpt)).toEqual(['keep']);
    expect(await readFile(hostFile, 'utf8')).toBe('on the host\n');
    await withImportedPool(path.join(project.out, 'nixos.root.img'), POOL, MOUNTS, async (root) => {
      expect(await readlink(path.join(root, 'opt'))).toBe(hostOpt);
      const motd = path.join(root, hostOpt, 'app/motd');
      expect(await readFile(motd, 'utf8')).toBe('hello from the image\n');
      expect((await stat(motd)).mode & 0o777).toBe(0o600);
      const file = path.join(root, 'srv/tree/sub/file.txt');
      expect((await lstat(file)).isFile()).toBe(true);
      expect(await readFile(file, 'utf8')).toBe('nested\n');
    });
  });

  it.each(['/boot', '/dev'])('refuses a link on a path install writes or mounts from the host (%s), naming it, and touches nothing there', async (where) => {
    const hostFolder = path.join(project.dir, `host${where.replace('/', '-')}`);
    await mkdir(hostFolder);
    await symlink(hostFolder, path.join(project.dir, `link${where.replace('/', '-')}`));
    await project.configure({ contents: [{ source: `link${where.replace('/', '-')}`, target: where }] });
    const build = await project.build();
    expect(build.exitCode).toBe(1);
    expect(build.statuses['install']).toBe('failed');
    const failed = build.stdout.split('\n').filter(Boolean).map((line) => JSON.parse(line) as { id?: string; status?: string; reason?: string })
      .find((event) => event.id === 'install' && event.status === 'failed');
    expect(failed?.reason).toContain(`contents put a symbolic link at ${where} (to ${hostFolder}) in the image`);
    expect(await readdir(hostFolder)).toEqual([]);
    expect(await readFile('/proc/self/mountinfo', 'utf8')).not.toContain(hostFolder); // nothing bound onto it
  });
});

describe('the runner\'s umask', () => {
  it('does not reach the image: under umask 077 what the build creates there is 0755 (folders) and 0644 (files), as nixos-install makes it', async () => {
    await project.configure({ contents: [{ source: 'motd', target: '/opt/a/b/motd' }] });
    // the package's command, as users run it, under a strict umask (as root with umask 077 would)
    const argv = [path.join(ROOT, 'bin/zfs-image.js'), 'build', '--config', project.configFile, '--cache-dir', project.cache, '--out', project.out];
    const build = await execa('sh', ['-c', 'umask 077 && exec "$0" "$@"', process.execPath, ...argv], { reject: false, cwd: ROOT, env: { CI: '1' } });
    expect(build.exitCode, build.stderr).toBe(0);
    await withImportedPool(path.join(project.out, 'nixos.root.img'), POOL, MOUNTS, async (root) => {
      const modes: Record<string, string> = {};
      for (const inImage of ['opt', 'opt/a', 'opt/a/b', 'etc', 'etc/nixos', 'etc/nixos/configuration.nix', 'etc/NIXOS', 'var', 'home', 'nix', 'nix/var/nix/profiles', 'nix/var/nix/db']) {
        modes[inImage] = ((await stat(path.join(root, inImage))).mode & 0o777).toString(8);
      }
      expect(modes).toEqual({
        opt: '755',
        'opt/a': '755',
        'opt/a/b': '755',
        etc: '755',
        'etc/nixos': '755',
        'etc/nixos/configuration.nix': '644',
        'etc/NIXOS': '644',
        var: '755',
        home: '755',
        nix: '755',
        'nix/var/nix/profiles': '755',
        'nix/var/nix/db': '755',
      });
    });
  });
});

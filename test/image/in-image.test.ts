import { mkdir, mkdtemp, rm, symlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { hostPathInImage, refuseLinksOn } from '../../tasks/image/stages/in-image.ts';

let root: string;
beforeEach(async () => {
  root = await mkdtemp(path.join(tmpdir(), 'in-image-'));
});
afterEach(() => rm(root, { recursive: true, force: true }));

describe('host paths of image paths', () => {
  it('are the plain join when no link is in the way, and the root for /', async () => {
    expect(await hostPathInImage(root, '/etc/motd')).toBe(path.join(root, 'etc/motd'));
    expect(await hostPathInImage(root, '/')).toBe(root);
  });

  it('take an absolute link in the image from the image\'s root, not the host\'s', async () => {
    await symlink('/usr/share', path.join(root, 'opt'));
    expect(await hostPathInImage(root, '/opt/app/conf')).toBe(path.join(root, 'usr/share/app/conf'));
  });

  it('never climb above the image\'s root through ..', async () => {
    await mkdir(path.join(root, 'srv'));
    await symlink('../../../../etc', path.join(root, 'srv/up'));
    expect(await hostPathInImage(root, '/srv/up/passwd')).toBe(path.join(root, 'etc/passwd'));
  });

  it('follow a chain of relative and absolute links, but not the last component', async () => {
    await mkdir(path.join(root, 'data/real'), { recursive: true });
    await symlink('data', path.join(root, 'a'));
    await symlink('/a/real', path.join(root, 'b'));
    await symlink('/somewhere-else', path.join(root, 'data/real/last'));
    expect(await hostPathInImage(root, '/b/last')).toBe(path.join(root, 'data/real/last'));
  });

  it('give up on a link loop', async () => {
    await symlink('/loop', path.join(root, 'loop'));
    await expect(hostPathInImage(root, '/loop/x')).rejects.toThrow(/more than 40 symbolic links/);
  });
});

describe('refusing links on install\'s own paths', () => {
  it('names the link and what it points to', async () => {
    await mkdir(path.join(root, 'nix/var'), { recursive: true });
    await symlink('/nix/var/nix', path.join(root, 'nix/var/nix'));
    await expect(refuseLinksOn(root, ['/nix/store', '/nix/var/nix/db'], 'contents')).rejects.toThrow(
      'contents put a symbolic link at /nix/var/nix (to /nix/var/nix) in the image; install writes /nix/var/nix/db from the build host',
    );
  });

  it('passes real folders and paths that do not exist yet', async () => {
    await mkdir(path.join(root, 'nix/store'), { recursive: true });
    await symlink('/etc/static/motd', path.join(root, 'motd')); // not on a path install writes
    await expect(refuseLinksOn(root, ['/nix/store', '/nix/var/nix/db', '/boot'], 'contents')).resolves.toBeUndefined();
  });
});

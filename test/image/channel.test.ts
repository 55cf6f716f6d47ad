// includeChannel: the nixpkgs tree lands in the image as root's `nixos` channel, laid out as the seed does.
import { mkdir, mkdtemp, readdir, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { imageProject, type ImageProject } from '../helpers/image.ts';
import { uniquePool } from '../helpers/reliability.ts';

let project: ImageProject;
let nixpkgs: string;
beforeAll(async () => {
  nixpkgs = await mkdtemp(path.join(tmpdir(), 'nixpkgs-'));
  await mkdir(path.join(nixpkgs, 'lib'));
  await mkdir(path.join(nixpkgs, '.git'));
  await writeFile(path.join(nixpkgs, 'default.nix'), '{ ... }: { }\n');
  await writeFile(path.join(nixpkgs, 'lib/a.nix'), '1\n');
  await writeFile(path.join(nixpkgs, '.git/HEAD'), 'ref\n');
  project = await imageProject(uniquePool('chtank'));
  await project.configure({ includeChannel: true, channelSource: nixpkgs });
});
afterAll(async () => {
  await project.cleanup();
  await rm(nixpkgs, { recursive: true, force: true });
  await rm(`${nixpkgs}-link`, { force: true });
});

describe('the channel', () => {
  it('is root\'s nixos channel, registered in the image, without .git', async () => {
    const built = await project.build();
    expect(built.exitCode, built.stderr).toBe(0);
    const script = [
      'channel=$(readlink nix/var/nix/profiles/per-user/root/channels-1-link)',
      'test -f "./$channel/nixos/default.nix"',
      'test -f "./$channel/nixos/nixpkgs/lib/a.nix"',
      'test ! -e "./$channel/nixos/.git"',
      'nix-store --store "$PWD" --query --requisites "$channel"',
    ].join(' && ');
    const shell = await project.run('shell', 'install', '--', 'sh', '-c', script);
    expect(shell.exitCode, shell.stderr).toBe(0);
    expect(shell.stdout).toMatch(/-nixos-channel$/m);
  });

  it('is not rebuilt for a change inside its .git, which is not copied', async () => {
    await writeFile(path.join(nixpkgs, '.git/HEAD'), 'another ref\n');
    const plan = await project.run('plan');
    expect(plan.stdout).toMatch(/^install\s+fresh\s/m);
  });

  it('is rebuilt when the tree changes, not only its path', async () => {
    await writeFile(path.join(nixpkgs, 'lib/a.nix'), '2\n');
    const plan = await project.run('plan');
    expect(plan.stdout).toMatch(/^install\s+run\s+changed: files\./m);
  });

  it('behind a symlink (as NIX_PATH\'s channels link is): the linked tree is copied and left untouched, and its changes count', async () => {
    const link = `${nixpkgs}-link`;
    await symlink(nixpkgs, link);
    await project.configure({ channelSource: link });
    const built = await project.build();
    expect(built.exitCode, built.stderr + built.stdout).toBe(0);
    // nothing was removed from or added to the tree the link points to
    expect((await readdir(nixpkgs)).sort()).toEqual(['.git', 'default.nix', 'lib']);
    const shell = await project.run('shell', 'install', '--', 'sh', '-c', 'channel=$(readlink nix/var/nix/profiles/per-user/root/channels-1-link) && cat "./$channel/nixos/lib/a.nix" && test ! -L "./$channel/nixos"');
    expect(shell.exitCode, shell.stderr).toBe(0);
    expect(shell.stdout).toMatch(/^2$/m);
    // a change inside the linked tree, with the link itself unchanged
    await writeFile(path.join(nixpkgs, 'lib/a.nix'), '3\n');
    expect((await project.run('plan')).stdout).toMatch(/^install\s+run\s+changed: files\./m);
  });
});

// What the system task hashes for an expression: its folder, or the folder it is; and the Nix files
// its evaluation read elsewhere, checked before a cached entry is trusted (a real nix-build).
import { execa } from 'execa';
import { mkdir, mkdtemp, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { resolvedNixPath, systemTask } from '../../tasks/image/stages/system.ts';
import { ROOT } from '../helpers/toy.ts';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'system-task-'));
  await mkdir(path.join(dir, 'machine'));
  await writeFile(path.join(dir, 'machine/default.nix'), '{ }\n');
  await writeFile(path.join(dir, 'system.nix'), '{ }\n');
  await mkdir(path.join(dir, 'elsewhere'));
  await symlink(path.join(dir, 'system.nix'), path.join(dir, 'elsewhere/linked.nix'));
});
afterAll(() => rm(dir, { recursive: true, force: true }));

describe('system task inputs', () => {
  it('hashes a file expression with its neighbours, through symlinks, without the folders named as not inputs', () => {
    const task = systemTask({ expression: path.join(dir, 'system.nix') }, [path.join(dir, 'cache')]);
    expect(task.inputFiles).toEqual([{ path: dir, ignore: [path.join(dir, 'cache')], follow: true }]);
  });

  it('hashes a symlinked file with the neighbours of the file it points to, whose imports Nix resolves from there', () => {
    const task = systemTask({ expression: path.join(dir, 'elsewhere/linked.nix') });
    expect(task.inputFiles).toEqual([{ path: dir, ignore: [], follow: true }]);
  });

  it('hashes a folder expression (holding default.nix) itself, not its parent', () => {
    const task = systemTask({ expression: path.join(dir, 'machine') });
    expect(task.inputFiles).toEqual([{ path: path.join(dir, 'machine'), ignore: [], follow: true }]);
  });

  it('keys an expression on the search path with each path resolved, so a channel update (a moved link) counts', async () => {
    await mkdir(path.join(dir, 'channel-1'));
    await mkdir(path.join(dir, 'channel-2'));
    const link = path.join(dir, 'channels');
    await symlink(path.join(dir, 'channel-1'), link);
    const before = resolvedNixPath(`nixpkgs=${link}:${link}`);
    expect(before).toBe(`nixpkgs=${path.join(dir, 'channel-1')}:${path.join(dir, 'channel-1')}`);
    await rm(link);
    await symlink(path.join(dir, 'channel-2'), link);
    expect(resolvedNixPath(`nixpkgs=${link}:${link}`)).not.toBe(before);
    // unset: Nix's default, the user's channels then root's
    expect(resolvedNixPath(undefined, '/home/x')).toMatch(/^\/home\/x\/\.nix-defexpr\/channels:nixpkgs=/);
    // a URL keeps its colons, as Nix reads it, and is not resolved as a path
    expect(resolvedNixPath(`nixpkgs=https://example.org/nixpkgs.tar.gz:${link}`)).toBe(`nixpkgs=https://example.org/nixpkgs.tar.gz:${path.join(dir, 'channel-2')}`);
  });

  it('hashes no files for a toplevel or a flake', () => {
    expect(systemTask({ toplevel: '/nix/store/0123456789abcdfghijklmnpqrsvwxyz-nixos-system-x' }).inputFiles).toBeUndefined();
    expect(systemTask({ flake: '.#demo' }).inputFiles).toBeUndefined();
  });
});

describe('system from an expression that imports a file outside its folder', () => {
  it('rebuilds when that file changes, and plan says which file', async () => {
    const work = path.join(dir, 'outside');
    await mkdir(path.join(work, 'sys'), { recursive: true });
    await mkdir(path.join(work, 'common'));
    const source = await readFile(path.join(ROOT, 'tasks/image/demo/system.nix'), 'utf8');
    expect(source).toContain('label ? "demo"');
    // through a link inside the folder: the folder's hash sees only the link, so the file counts as outside
    await symlink('../common', path.join(work, 'sys/shared'));
    await writeFile(path.join(work, 'sys/system.nix'), source.replace('label ? "demo"', 'label ? import ./shared/label.nix'));
    await writeFile(path.join(work, 'common/label.nix'), '"outside-one"\n');
    const config = path.join(work, 'sys/config.json');
    await writeFile(config, JSON.stringify({ rootPoolName: 'outside', datasets: { 'outside/root': { mount: '/' } }, includeChannel: false, system: { expression: 'system.nix' } }));
    let nixPath = process.env['NIX_PATH'] ?? '';
    const cli = (...args: string[]) =>
      execa('node', ['bin/zfs-image.js', ...args, '--config', config, '--cache-dir', path.join(work, 'cache'), '--out', path.join(work, 'out')], { cwd: ROOT, reject: false, env: { CI: '1', NIX_PATH: nixPath } });
    const toplevelOf = async () => {
      const result = await cli('build', 'system', '--json');
      expect(result.exitCode, result.stderr).toBe(0);
      const task = result.stdout.split('\n').filter(Boolean).map((line) => JSON.parse(line) as { type: string; id?: string; status?: string; reason?: string }).find((e) => e.type === 'task' && e.id === 'system' && e.status !== 'started')!;
      const log = (await cli('logs', 'system')).stdout;
      return { status: task.status, reason: task.reason, toplevel: /nixos-system-([a-z-]+)-25/.exec(log)?.[1] };
    };
    expect(await toplevelOf()).toMatchObject({ status: 'ran', toplevel: 'outside-one' });
    expect(await toplevelOf()).toMatchObject({ status: 'cached' });
    await writeFile(path.join(work, 'common/label.nix'), '"outside-two"\n');
    const plan = await cli('plan');
    expect(plan.stdout).toMatch(new RegExp(`^system\\s+run\\s+cache entry stale: ${path.join(work, 'sys/shared/label.nix')} changed since the last evaluation`, 'm'));
    expect(await toplevelOf()).toMatchObject({ status: 'ran', toplevel: 'outside-two' });
    expect(await toplevelOf()).toMatchObject({ status: 'cached' });
    // <nixpkgs> resolves through NIX_PATH: another one (a pinned store path, say) evaluates again
    nixPath = `nixpkgs=${work}`;
    expect(await toplevelOf()).toMatchObject({ status: 'ran', reason: expect.stringContaining('inputs.nixPath') });
  });
});

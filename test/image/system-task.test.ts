// What the system task hashes for an expression: its folder, or the folder it is.
import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { systemTask } from '../../tasks/image/stages/system.ts';

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

  it('hashes no files for a toplevel or a flake', () => {
    expect(systemTask({ toplevel: '/nix/store/0123456789abcdfghijklmnpqrsvwxyz-nixos-system-x' }).inputFiles).toBeUndefined();
    expect(systemTask({ flake: '.#demo' }).inputFiles).toBeUndefined();
  });
});

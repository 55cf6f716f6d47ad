// system: {flake}: evaluated on every build, but install and what follows stay fresh while the toplevel is the same.
import { copyFile, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEMO, imageProject, ran, type ImageProject } from '../helpers/image.ts';
import { uniquePool } from '../helpers/reliability.ts';

let project: ImageProject;
let flake: string;
beforeAll(async () => {
  flake = await mkdtemp(path.join(tmpdir(), 'flake-'));
  await copyFile(DEMO.system, path.join(flake, 'system.nix'));
  // a copy of busybox inside the flake keeps evaluation pure
  await copyFile('/bin/busybox', path.join(flake, 'busybox'));
  await writeFile(
    path.join(flake, 'flake.nix'),
    [
      '{ outputs = { self }: let system = label: import ./system.nix { inherit label; busyboxBinary = ./busybox; system = "x86_64-linux"; }; in {',
      '  nixosConfigurations.demo.config.system.build.toplevel = system "flake";',
      // a name with a dot: one attribute, which only a quoted attribute path reaches
      '  nixosConfigurations."demo.v2".config.system.build.toplevel = system "flake-v2";',
      '}; }',
    ].join('\n'),
  );
  project = await imageProject(uniquePool('ftank'));
  await project.configure({ system: { flake: `path:${flake}#demo` } });
});
afterAll(async () => {
  await project.cleanup();
  await rm(flake, { recursive: true, force: true });
});

describe('a flake system', () => {
  it('builds the image from nixosConfigurations.<name>', async () => {
    const built = await project.build();
    expect(built.exitCode, built.stderr + built.stdout).toBe(0);
    const info = JSON.parse(await readFile(path.join(project.out, 'image-info.json'), 'utf8')) as { system: { toplevel: string } };
    expect(info.system.toplevel).toMatch(/-nixos-system-flake-/);
  });

  it('is evaluated again on a rerun, and nothing after it runs while its toplevel is unchanged', async () => {
    const again = await project.build();
    expect(again.exitCode, again.stderr).toBe(0);
    expect(ran(again.statuses)).toEqual(['system']);
    expect(again.statuses['install']).toBe('cached');
  });

  it('takes a configuration name with a dot as one name', async () => {
    await project.configure({ system: { flake: `path:${flake}#demo.v2` } });
    const built = await project.build();
    expect(built.exitCode, built.stderr + built.stdout).toBe(0);
    const info = JSON.parse(await readFile(path.join(project.out, 'image-info.json'), 'utf8')) as { system: { toplevel: string } };
    expect(info.system.toplevel).toMatch(/-nixos-system-flake-v2-/);
  });
});

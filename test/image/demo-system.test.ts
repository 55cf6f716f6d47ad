import { access, constants, lstat, mkdir, mkdtemp, readFile, readlink, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createExec } from '../../lib/execution/exec.ts';
import { demoSystem } from '../helpers/reliability.ts';

const exec = createExec();
const isRoot = process.getuid?.() === 0;

async function closureOf(storePath: string): Promise<string[]> {
  const { stdout } = await exec('nix-store', ['-qR', storePath], { quiet: true });
  return stdout.split('\n').filter((line) => line.length > 0);
}

async function isExecutable(file: string): Promise<boolean> {
  return access(file, constants.X_OK).then(
    () => true,
    () => false,
  );
}

let toplevel: string;
let closure: string[];
const temps: string[] = [];

beforeAll(async () => {
  toplevel = await demoSystem();
  closure = await closureOf(toplevel);
}, 120_000);
afterAll(async () => {
  for (const temp of temps) await rm(temp, { recursive: true, force: true });
});

describe('demo system build', () => {
  it('is a toplevel with the entry points the install stage calls', async () => {
    expect(toplevel).toMatch(/^\/nix\/store\/[0-9a-z]{32}-nixos-system-demo-/);
    for (const entry of ['activate', 'bin/switch-to-configuration', 'init', 'sw/bin/sh', 'sw/bin/bash']) {
      expect(await isExecutable(path.join(toplevel, entry)), entry).toBe(true);
    }
    expect(await readFile(path.join(toplevel, 'nixos-version'), 'utf8')).toMatch(/^\d+\.\d+\./);
  });

  it('has a closure of busybox and itself, and scripts that run on that busybox', async () => {
    expect(closure).toHaveLength(2);
    expect(closure).toContain(toplevel);
    const busybox = closure.find((p) => p !== toplevel) ?? '';
    expect(busybox).toMatch(/-busybox-static$/);
    for (const script of ['activate', 'bin/switch-to-configuration', 'init', 'sw/bin/bash']) {
      const firstLine = (await readFile(path.join(toplevel, script), 'utf8')).split('\n')[0];
      expect(firstLine).toBe(`#!${busybox}/bin/busybox sh`);
    }
    expect(await readlink(path.join(toplevel, 'sw/bin/sh'))).toBe(`${busybox}/bin/busybox`);
  });

  it('builds other toplevels from its arguments', async () => {
    const other = await demoSystem('--argstr', 'label', 'other');
    const failing = await demoSystem('--arg', 'failSwitch', 'true');
    expect(new Set([toplevel, other, failing]).size).toBe(3);
    expect(other).toMatch(/-nixos-system-other-/);
    expect(await demoSystem()).toBe(toplevel);
  }, 120_000);
});

describe.skipIf(!isRoot)('demo system chrooted in an image root', () => {
  /** A root holding only the closure of `system`, like the install stage's image. */
  async function imageRoot(system: string, nixos = true): Promise<string> {
    const root = await mkdtemp(path.join(tmpdir(), 'demo-root-'));
    temps.push(root);
    await mkdir(path.join(root, 'nix', 'store'), { recursive: true });
    await mkdir(path.join(root, 'etc'));
    await exec('cp', ['-a', ...(await closureOf(system)), path.join(root, 'nix', 'store')], { quiet: true });
    if (nixos) await writeFile(path.join(root, 'etc', 'NIXOS'), '');
    return root;
  }

  // what the install stage sets: /boot is a folder there, which bootctl accepts only with relaxed checks
  const install = { NIXOS_INSTALL_BOOTLOADER: '1', SYSTEMD_RELAX_ESP_CHECKS: '1' };

  it('activates and writes the systemd-boot entry and loader.conf', async () => {
    const root = await imageRoot(toplevel);
    await exec('chroot', [root, `${toplevel}/activate`], { env: install, quiet: true });
    expect(await readlink(path.join(root, 'run', 'current-system'))).toBe(toplevel);
    expect((await readFile(path.join(root, 'etc', 'NIXOS-ACTIVATED'), 'utf8')).trim()).toBe(toplevel);

    await exec('chroot', [root, `${toplevel}/bin/switch-to-configuration`, 'boot'], { env: install, quiet: true });
    const entry = await readFile(path.join(root, 'boot', 'loader', 'entries', 'nixos-demo.conf'), 'utf8');
    expect(entry).toContain('title NixOS (demo)');
    expect(entry).toContain(`options init=${toplevel}/init`);
    expect(await readFile(path.join(root, 'boot', 'loader', 'loader.conf'), 'utf8')).toBe('# boot loader installed (NIXOS_INSTALL_BOOTLOADER=1)\ntimeout 3\ndefault nixos-demo.conf\n');
    const kernel = await lstat(path.join(root, 'boot', 'EFI', 'nixos', 'demo-kernel.efi'));
    expect(kernel.isFile()).toBe(true);
  });

  it('installs the loader only when asked, and, like bootctl, refuses a /boot that is not a mounted ESP without relaxed checks', async () => {
    const root = await imageRoot(toplevel);
    const strict = await exec('chroot', [root, `${toplevel}/bin/switch-to-configuration`, 'boot'], {
      env: { NIXOS_INSTALL_BOOTLOADER: '1', SYSTEMD_RELAX_ESP_CHECKS: '' },
      okExitCodes: [1],
      quiet: true,
    });
    expect(strict.exitCode).toBe(1);
    expect(strict.stderr).toMatch(/\/boot is not a mounted ESP; bootctl would refuse it/);
    await expect(lstat(path.join(root, 'boot'))).rejects.toThrow(); // refused before writing anything
    // without NIXOS_INSTALL_BOOTLOADER only the entry is written, and a first loader.conf
    await exec('chroot', [root, `${toplevel}/bin/switch-to-configuration`, 'boot'], { env: { NIXOS_INSTALL_BOOTLOADER: '' }, quiet: true });
    expect(await readFile(path.join(root, 'boot', 'loader', 'loader.conf'), 'utf8')).toBe('timeout 3\ndefault nixos-demo.conf\n');
    expect(await readFile(path.join(root, 'boot', 'loader', 'entries', 'nixos-demo.conf'), 'utf8')).toContain('title NixOS (demo)');
  });

  it('runs sw/bin/bash as busybox sh', async () => {
    const root = await imageRoot(toplevel);
    const { stdout } = await exec('chroot', [root, `${toplevel}/sw/bin/bash`, '-c', 'echo $((6 * 7))'], { quiet: true });
    expect(stdout.trim()).toBe('42');
  });

  it('refuses actions other than boot, and roots that are not NixOS', async () => {
    const root = await imageRoot(toplevel);
    const switched = await exec('chroot', [root, `${toplevel}/bin/switch-to-configuration`, 'switch'], {
      okExitCodes: [1],
      quiet: true,
    });
    expect(switched.exitCode).toBe(1);
    expect(switched.stderr).toMatch(/'switch' is not supported/);

    const bare = await imageRoot(toplevel, false);
    const outside = await exec('chroot', [bare, `${toplevel}/bin/switch-to-configuration`, 'boot'], {
      env: install,
      okExitCodes: [1],
      quiet: true,
    });
    expect(outside.exitCode).toBe(1);
    expect(outside.stderr).toMatch(/\/etc\/NIXOS is missing/);
    await expect(lstat(path.join(bare, 'boot'))).rejects.toThrow();
  });

  it('fails on purpose when built with failSwitch', async () => {
    const failing = await demoSystem('--arg', 'failSwitch', 'true');
    const root = await imageRoot(failing);
    const result = await exec('chroot', [root, `${failing}/bin/switch-to-configuration`, 'boot'], {
      env: install,
      okExitCodes: [1],
      quiet: true,
    });
    expect(result.exitCode).toBe(1);
    expect(result.stderr).toMatch(/failing on purpose/);
    await expect(lstat(path.join(root, 'boot', 'loader', 'entries', 'nixos-demo.conf'))).rejects.toThrow();
  }, 120_000);
});

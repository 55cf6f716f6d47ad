// On a NixOS host, install hands work to nixos-enter and nixos-install. Neither exists on Debian,
// so these builds put stand-ins on PATH: scripts that record how they were called and do the
// part of the job the rest of the build checks (the real tools cannot be had offline here).
import { execa } from 'execa';
import { chmod, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { imageProject, ran, type ImageProject } from '../helpers/image.ts';
import { leftovers, uniquePool } from '../helpers/reliability.ts';

const POOL = uniquePool('nxt');
const mtools = { env: { MTOOLS_SKIP_CHECK: '1' } };
let scratch: string;
let calls: string;
let project: ImageProject;

/** Writes an executable stand-in under `bin` that appends its argv and NIXOS_INSTALL_BOOTLOADER to the calls file, then runs `body`. */
async function standIn(bin: string, name: string, body: string): Promise<void> {
  const script = ['#!/bin/sh', `printf '%s|%s\\n' "${name} $*" "$NIXOS_INSTALL_BOOTLOADER" >> "${calls}"`, body, ''].join('\n');
  await writeFile(path.join(bin, name), script);
  await chmod(path.join(bin, name), 0o755);
}

beforeAll(async () => {
  scratch = await mkdtemp(path.join(tmpdir(), 'nixos-tools-'));
  calls = path.join(scratch, 'calls.log');
  const bin = path.join(scratch, 'bin');
  await mkdir(bin);
  // nixos-enter --root ROOT -- CMD...: the real one binds /dev, /proc, /sys and chroots
  // by full path: it runs with the image's PATH, as the real one would
  const chroot = (await execa('sh', ['-c', 'command -v chroot'], { env: { PATH: `${process.env['PATH']}:/usr/sbin:/sbin` } })).stdout.trim();
  await standIn(bin, 'nixos-enter', `root=$2; shift 3; exec ${chroot} "$root" "$@"`);
  project = await imageProject(POOL, { PATH: `${bin}:${process.env['PATH']}` });
});
afterEach(async () => {
  expect(await leftovers(project.dir, [POOL])).toEqual({ pools: [], mounts: [], loops: [] });
});
afterAll(async () => {
  await project?.cleanup();
  await rm(scratch, { recursive: true, force: true });
});

const callsMade = async (): Promise<string[]> => (await readFile(calls, 'utf8').catch(() => '')).split('\n').filter(Boolean);
const toplevelOf = async (): Promise<string> =>
  (JSON.parse(await readFile(path.join(project.out, 'image-info.json'), 'utf8')) as { system: { toplevel: string } }).system.toplevel;
const espFile = async (file: string): Promise<string> =>
  (await execa('mtype', ['-i', `${path.join(project.out, 'nixos.boot.img')}@@${4096 * 512}`, `::${file}`], mtools)).stdout;

describe('install on a host with nixos-enter', () => {
  it('runs activate and switch-to-configuration through the host\'s nixos-enter, with NIXOS_INSTALL_BOOTLOADER=1', async () => {
    const result = await project.build();
    expect(result.exitCode, result.stdout).toBe(0);
    const toplevel = await toplevelOf();
    const enters = (await callsMade()).filter((line) => line.startsWith('nixos-enter '));
    expect(enters).toEqual([
      expect.stringMatching(new RegExp(`^nixos-enter --root /\\S+ -- ${toplevel}/activate\\|1$`)),
      expect.stringMatching(new RegExp(`^nixos-enter --root /\\S+ -- ${toplevel}/bin/switch-to-configuration boot\\|1$`)),
    ]);
    // what switch-to-configuration wrote in the image's /boot reached the ESP
    expect(await espFile('/loader/entries/nixos-demo.conf')).toContain(`init=${toplevel}/init`);
  });
});

describe('install on a host with nixos-install', () => {
  it('hands the closure, the profile and the boot loader to nixos-install with the seed\'s flags, and install reruns when it appears', async () => {
    // nixos-install --root ROOT ... --system TOPLEVEL: the stand-in writes a loader entry the way the real one's boot loader would
    const bin = path.join(scratch, 'bin');
    await standIn(bin, 'nixos-install', 'mkdir -p "$2/boot/loader" && echo "installed by nixos-install" > "$2/boot/loader/stand-in.conf"');
    await rm(calls, { force: true });
    const result = await project.build();
    expect(result.exitCode, result.stdout).toBe(0);
    // the tool is one of install's inputs: its appearance reruns install and what follows, not create-pool
    expect(ran(result.statuses)).toEqual(['convert:boot', 'convert:root', 'export-pool', 'install', 'install:esp', 'mount', 'post-vm']);
    const toplevel = await toplevelOf();
    expect(await callsMade()).toEqual([expect.stringMatching(new RegExp(`^nixos-install --root /\\S+ --no-root-passwd --system ${toplevel} --substituters \\|$`))]);
    // nixos-install did the work: the closure was not copied by the build itself
    const log = (await project.run('logs', 'install')).stdout;
    expect(log).toMatch(/^\$ \/\S+\/nixos-install --root /m);
    expect(log).not.toMatch(/copied \d+ store paths/);
    expect(await espFile('/loader/stand-in.conf')).toBe('installed by nixos-install');
  });
});

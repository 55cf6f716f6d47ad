import { copyFile, mkdir, readdir, realpath, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { Json, Task, TaskContext } from '../../../lib/engine/task.ts';
import { whichTool } from '../../../lib/execution/which.ts';
import { allocatedBytes, writeWithinFreeSpace } from '../../../lib/caching/free-space.ts';
import type { ImageConfig } from '../config.ts';
import { compressionAt, configurationNix, fileSystemsNix, nixosConfigLayout } from '../generators.ts';
import { copyClosure } from './copy-closure.ts';
import { hostPathInImage, refuseLinksOn } from './in-image.ts';
import type { MountedImage } from './mount.ts';
import { nixOptions } from '../nix-options.ts';
import { describeClosure, type SystemValues } from './system.ts';

/** The image paths install (or nixos-install, nix-store --store) writes from the host after contents. */
const INSTALL_WRITES = [
  '/nix/store', '/nix/var/nix/db', '/nix/var/nix/profiles/per-user/root', '/nix/var/nix/gcroots', '/nix/var/nix/temproots',
  '/etc/NIXOS', '/boot',
  // mount points of the boot loader step (and of nixos-enter and nixos-install): a mount follows a link
  '/dev', '/proc', '/sys', '/run', '/tmp',
];

/** The compression of the dataset the store lands on. */
const storeCompression = (config: ImageConfig): string => compressionAt(config.datasets, config.rootPoolFilesystemProperties, '/nix/store');

/** Where a host path lands inside the mounted image. */
const inImage = (root: string, target: string): string => path.join(root, target);

/**
 * `install`: NixOS into the mounted image: configuration.nix with the generated fileSystems,
 * contents with mode and owner, the system's closure copied and registered, the system profile,
 * /etc/NIXOS, then the boot loader chrooted (activate, switch-to-configuration boot) as
 * nixos-install does. The /boot it produces is published as the folder `esp` for install:esp.
 */
export function installTask(config: ImageConfig): Task {
  const inputFiles = [
    // copied with cp -a: a symlink goes in as a symlink, so its target path is what counts
    ...config.contents.map((c) => c.source),
    // read through a symlink (a linked configuration.nix, NIX_PATH's channels link): what it points to counts
    ...(config.configFile ? [{ path: config.configFile, follow: true }] : []),
    // the channel's content, not just its path, decides what is copied; its .git is not copied (makeChannel)
    ...(config.includeChannel && config.channelSource ? [{ path: config.channelSource, ignore: ['.git'], follow: true }] : []),
  ];
  return {
    id: 'install',
    stage: 'install',
    title: 'install NixOS into the image',
    deps: ['mount', 'system'],
    inputs: {
      datasets: config.datasets as unknown as Json,
      contents: config.contents as unknown as Json,
      configFile: config.configFile,
      includeChannel: config.includeChannel,
      // read only when the channel goes in: without it, another NIX_PATH must not rerun install
      channelSource: config.includeChannel ? (config.channelSource ?? null) : null,
    },
    inputFiles,
    // 2: writes with umask 022 (an entry made under a stricter umask has folders its users cannot read)
    version: 2,
    // nixos-install and nixos-enter change how install works when they appear on PATH (hashed as "missing" until then)
    tools: ['nix-store', 'nix-env', 'chroot', 'cp', 'nixos-install', 'nixos-enter'],
    artifacts: [
      { name: 'esp', kind: 'folder' },
      { name: 'toplevel', kind: 'value' },
    ],
    async run(ctx) {
      const image = ctx.resources['mount'] as MountedImage;
      const system = ctx.deps['system']!.values as unknown as SystemValues;
      const root = image.root;
      // Everything goes into the image as nixos-install writes it, with umask 022: the runner's own
      // (077 for a careful root) would leave /etc and the contents' new parent folders unreadable to
      // the image's users. Process-wide until install ends; tasks beside it get the ordinary 022 too.
      const umask = process.umask(0o022);
      ctx.cleanup(() => void process.umask(umask));
      await writeNixosConfig(root, config);
      await installContents(ctx, root, config);
      // what install writes next from the host must not pass through a link the contents made
      await refuseLinksOn(root, INSTALL_WRITES, 'contents');
      const nixosInstall = await whichTool('nixos-install');
      if (nixosInstall) {
        // On NixOS the real installer does the closure, the profile and the boot loader, with the seed's flags.
        const channel = config.includeChannel && config.channelSource ? await makeChannel(ctx, config.channelSource) : undefined;
        await mkdir(inImage(root, '/boot'), { recursive: true });
        await ctx.exec(nixosInstall, nixosInstallArgs(root, system.toplevel, channel), { env: { SYSTEMD_RELAX_ESP_CHECKS: '1' } });
      } else {
        await copyClosure(ctx, root, system.closure, system.closureSizes, storeCompression(config));
        await registerInImage(ctx, root, system.closure, system.toplevel, '/nix/var/nix/profiles/system');
        if (config.includeChannel && config.channelSource) await installChannel(ctx, root, config.channelSource, storeCompression(config));
        await mkdir(inImage(root, '/etc'), { recursive: true });
        await writeFile(inImage(root, '/etc/NIXOS'), '');
        await installBootLoader(ctx, root, system.toplevel);
      }
      await takeBoot(ctx, root, path.join(ctx.staging, 'esp'));
      return { toplevel: system.toplevel };
    },
  };
}

/** The seed's nixos-install command line (used instead of the steps below where nixos-install is on PATH). */
export function nixosInstallArgs(root: string, toplevel: string, channel: string | undefined): string[] {
  return ['--root', root, '--no-root-passwd', '--system', toplevel, '--substituters', '', ...(channel ? ['--channel', channel] : [])];
}

/** /etc/nixos: configuration.nix importing the generated file systems and the user's configFile, as copies. */
async function writeNixosConfig(root: string, config: ImageConfig): Promise<void> {
  const dir = inImage(root, nixosConfigLayout.dir);
  await mkdir(dir, { recursive: true });
  await writeFile(path.join(dir, nixosConfigLayout.fileSystems), fileSystemsNix(config.datasets));
  if (config.configFile) await copyFile(config.configFile, path.join(dir, nixosConfigLayout.userConfiguration));
  await writeFile(
    path.join(dir, nixosConfigLayout.configuration),
    configurationNix(nixosConfigLayout.fileSystems, config.configFile ? nixosConfigLayout.userConfiguration : null),
  );
}

/** Copies `contents` into the image with their mode and owner (the seed accepts them and never does this). */
async function installContents(ctx: TaskContext<any>, root: string, config: ImageConfig): Promise<void> {
  for (const [index, item] of config.contents.entries()) {
    // through the image's own links (an earlier entry may have put one in the way), never out of it
    const target = await hostPathInImage(root, item.target);
    await mkdir(path.dirname(target), { recursive: true });
    const compression = compressionAt(config.datasets, config.rootPoolFilesystemProperties, item.target);
    await writeWithinFreeSpace(path.dirname(target), await allocatedBytes(item.source), `contents[${index}] (${item.source})`, compression, (line) => ctx.log(line), async () => {
      // replaces a link already in the image instead of writing through it
      await ctx.exec('cp', ['-a', '--remove-destination', '--no-target-directory', '--', item.source, target]);
    });
    if (item.user || item.group) {
      // Names are looked up on the build host; numeric ids are taken as they are.
      await ctx.exec('chown', ['-h', `${item.user ?? ''}${item.group ? `:${item.group}` : ''}`, target]);
    }
    // after chown, which clears setuid and setgid bits
    if (item.mode) await ctx.exec('chmod', [item.mode, target]);
  }
}

/** Loads a closure's registration into the image's Nix database and points `profile` (an image path) at `target`. */
async function registerInImage(ctx: TaskContext<any>, root: string, closure: readonly string[], target: string, profile: string): Promise<void> {
  const store = `local?root=${root}`;
  const dump = await ctx.exec('nix-store', ['--dump-db', ...closure], { quiet: true });
  await ctx.exec('nix-store', ['--store', store, '--load-db', ...nixOptions()], { input: dump.stdout });
  await mkdir(path.dirname(inImage(root, profile)), { recursive: true });
  await ctx.exec('nix-env', ['--store', store, '-p', inImage(root, profile), '--set', target, ...nixOptions()]);
}

/**
 * The channel as the seed lays it out: a store path holding `nixos/` (the nixpkgs tree without
 * .git, with a `nixpkgs` link to itself), so root's channels profile resolves `<nixpkgs>`.
 */
async function makeChannel(ctx: TaskContext<any>, source: string): Promise<string> {
  const top = path.join(ctx.scratch, 'nixos-channel');
  await mkdir(top, { recursive: true });
  // the folder a symlink points to (NIX_PATH's channels link), never the link: the steps below would
  // then write into the linked tree itself, a store path among them
  await ctx.exec('cp', ['-a', '--', await realpath(source), path.join(top, 'nixos')]);
  await rm(path.join(top, 'nixos/.git'), { recursive: true, force: true });
  await ctx.exec('ln', ['-sfn', '.', path.join(top, 'nixos/nixpkgs')]);
  return (await ctx.exec('nix-store', ['--add', top])).stdout.trim();
}

/** Copies the channel into the image, registers it and makes it root's `nixos` channel. */
async function installChannel(ctx: TaskContext<any>, root: string, source: string, compression: string): Promise<void> {
  const channel = await describeClosure(ctx.exec, await makeChannel(ctx, source));
  await copyClosure(ctx, root, channel.closure, channel.closureSizes, compression);
  await registerInImage(ctx, root, channel.closure, channel.toplevel, '/nix/var/nix/profiles/per-user/root/channels');
}

/**
 * The boot loader as nixos-install does it: /dev, /proc and /sys bound into the image, then
 * the system's `activate` and `switch-to-configuration boot` chrooted with NIXOS_INSTALL_BOOTLOADER=1
 * and SYSTEMD_RELAX_ESP_CHECKS=1.
 * Where nixos-enter is on PATH (a NixOS host), it does the binding.
 */
async function installBootLoader(ctx: TaskContext<any>, root: string, toplevel: string): Promise<void> {
  await mkdir(inImage(root, '/boot'), { recursive: true });
  const env = {
    NIXOS_INSTALL_BOOTLOADER: '1',
    IN_NIXOS_ENTER: '1',
    // /boot is a folder here, copied into the FAT partition afterwards: bootctl would refuse it as "not an ESP"
    SYSTEMD_RELAX_ESP_CHECKS: '1',
    PATH: '/run/current-system/sw/bin:/usr/bin:/bin',
  };
  // by its full path: the environment's PATH below is the image's, where the host's tool is not
  const nixosEnter = await whichTool('nixos-enter');
  if (nixosEnter) {
    await ctx.exec(nixosEnter, ['--root', root, '--', `${toplevel}/activate`], { env });
    await ctx.exec(nixosEnter, ['--root', root, '--', `${toplevel}/bin/switch-to-configuration`, 'boot'], { env });
    return;
  }
  const bound: string[] = [];
  // Unbound in reverse whatever happens; a lazy unmount cannot fail on a busy /dev.
  ctx.cleanup(async () => {
    for (let target = bound.pop(); target !== undefined; target = bound.pop()) await ctx.exec('umount', ['--lazy', target]).catch(() => undefined);
  });
  for (const [source, target, type] of [
    ['/dev', '/dev', 'bind'],
    ['proc', '/proc', 'proc'],
    ['/sys', '/sys', 'bind'],
  ] as const) {
    const where = inImage(root, target);
    await mkdir(where, { recursive: true });
    // recorded first: a mount that an abort interrupts may still have happened
    bound.push(where);
    // one command: a recursive bind must never be there without rslave, or its unmount reaches the host
    if (type === 'bind') await ctx.exec('mount', ['--rbind', '--make-rslave', source, where]);
    else await ctx.exec('mount', ['-t', 'proc', 'proc', where]);
  }
  // Resolved before the environment's PATH becomes the image's.
  const chroot = (await whichTool('chroot')) ?? 'chroot';
  await ctx.exec(chroot, [root, `${toplevel}/activate`], { env });
  await ctx.exec(chroot, [root, `${toplevel}/bin/switch-to-configuration`, 'boot'], { env });
  // each is forgotten once unmounted: should one fail, the cleanup unmounts the rest
  while (bound.length > 0) {
    await ctx.exec('umount', ['--recursive', bound.at(-1)!]);
    bound.pop();
  }
}

/** Copies what the boot loader wrote to the image's /boot out to `dest` (the ESP's content, written into FAT by install:esp) and empties /boot, the ESP's mount point. */
async function takeBoot(ctx: TaskContext<any>, root: string, dest: string): Promise<void> {
  const boot = inImage(root, '/boot');
  await mkdir(dest, { recursive: true });
  const names = await readdir(boot);
  if (names.length === 0) return;
  await ctx.exec('cp', ['-a', '--', ...names.map((n) => path.join(boot, n)), dest]);
  for (const name of names) await rm(path.join(boot, name), { recursive: true, force: true });
}

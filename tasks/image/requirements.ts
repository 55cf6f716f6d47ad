import type { Requirement } from '../../lib/engine/requirement.ts';
import type { ZfsDriverChoice } from './zfs/select-driver.ts';
import { zfsModuleLoaded } from './zfs/select-driver.ts';

const BASE: readonly Requirement[] = [
  { program: 'qemu-img', purpose: 'creating and converting disk images', versionArgs: ['--version'], debian: 'qemu-utils', nixos: 'nix-shell -p qemu' },
  { program: 'parted', purpose: 'partitioning the boot disk', versionArgs: ['--version'], debian: 'parted', nixos: 'nix-shell -p parted' },
  { program: 'sfdisk', purpose: 'reading the partition table', versionArgs: ['--version'], debian: 'fdisk', nixos: 'nix-shell -p util-linux' },
  { program: 'mkfs.vfat', purpose: 'the ESP file system', debian: 'dosfstools', nixos: 'nix-shell -p dosfstools' },
  { program: 'mcopy', purpose: 'writing /boot into the ESP', versionArgs: ['--version'], debian: 'mtools', nixos: 'nix-shell -p mtools' },
  { program: 'nix-store', purpose: 'the closure and its registration', versionArgs: ['--version'], debian: 'nix-bin', nixos: 'part of NixOS' },
  { program: 'nix-env', purpose: 'the system profile', versionArgs: ['--version'], debian: 'nix-bin', nixos: 'part of NixOS' },
  { program: 'nix-build', purpose: 'building a system from an expression', versionArgs: ['--version'], debian: 'nix-bin', nixos: 'part of NixOS' },
  { program: 'nix', purpose: 'building a flake system', versionArgs: ['--version'], debian: 'nix-bin', nixos: 'part of NixOS' },
  { program: 'bash', purpose: 'running postVM', versionArgs: ['--version'], debian: 'bash', nixos: 'part of NixOS' },
  { program: 'cp', purpose: 'sparse copies of disk images', versionArgs: ['--version'], debian: 'coreutils', nixos: 'part of NixOS' },
  { program: 'chroot', purpose: 'activating the system in the image', versionArgs: ['--version'], debian: 'coreutils', nixos: 'part of NixOS' },
  { program: 'mount', purpose: 'binding /dev, /proc and /sys for activation', versionArgs: ['--version'], debian: 'mount', nixos: 'part of NixOS' },
];

const OPENZFS: readonly Requirement[] = [
  { program: 'zpool', purpose: 'the root pool (kernel ZFS)', versionArgs: ['version'], debian: 'zfsutils-linux', nixos: 'boot.supportedFilesystems = [ "zfs" ];' },
  { program: 'losetup', purpose: 'attaching the root disk as a whole disk', versionArgs: ['--version'], debian: 'mount', nixos: 'part of NixOS' },
];

const ZFS_FUSE: readonly Requirement[] = [
  { program: 'zfs-fuse', purpose: 'the root pool (userspace ZFS)', debian: 'zfs-fuse', nixos: 'use the openzfs driver: boot.supportedFilesystems = [ "zfs" ];' },
  // the host lock's helper: perl holds flock(2) itself (0.13 ms a command), util-linux flock is the fallback
  { program: 'perl', alternatives: ['flock'], purpose: 'one zfs-fuse command at a time on the host', versionArgs: ['--version'], debian: 'util-linux', nixos: 'part of NixOS' },
];

/** The programs an image build runs, for the ZFS driver that `choice` picks on this machine. */
export function imageRequirements(choice: ZfsDriverChoice): Requirement[] {
  const openzfs = choice === 'openzfs' || (choice === 'auto' && zfsModuleLoaded());
  return [...BASE, ...(openzfs ? OPENZFS : ZFS_FUSE)];
}

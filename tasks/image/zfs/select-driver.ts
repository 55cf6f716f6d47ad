/**
 * Chooses the ZFS driver: `auto` takes openzfs when the kernel module is
 * loaded, else zfs-fuse when it is installed, else says what to install.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { Exec } from '../../../lib/execution/types.ts';
import { findProgram } from '../../../lib/execution/which.ts';
import type { ZfsDriver, ZfsDriverName } from './driver.ts';
import { createOpenZfsDriver } from './openzfs.ts';
import { createZfsFuseDriver } from './zfs-fuse.ts';

/** What the user may ask for (`auto` is the default). */
export type ZfsDriverChoice = 'auto' | ZfsDriverName;

/** The choices, for option parsing and help. */
export const ZFS_DRIVER_CHOICES: readonly ZfsDriverChoice[] = ['auto', 'openzfs', 'zfs-fuse'];

/** How the host is probed; tests replace the probes. */
export interface SelectDriverOptions {
  readonly exec?: Exec;
  /** Whether the zfs kernel module is loaded (default: /sys/module/zfs exists). */
  readonly moduleLoaded?: () => boolean;
  /** Absolute path of a program, or undefined (default: PATH plus the sbin folders). */
  readonly findProgram?: (name: string) => string | undefined;
}

const INSTALL_HINT =
  'install ZFS: on Debian or Ubuntu `apt-get install zfsutils-linux` (kernel module) or `apt-get install zfs-fuse` ' +
  '(userspace, for containers and CI); on NixOS set boot.supportedFilesystems = [ "zfs" ]';

/** The kernel module shows up in sysfs once loaded. */
export function zfsModuleLoaded(): boolean {
  return existsSync('/sys/module/zfs');
}

/** Picks and creates the driver for a choice, or throws saying what is missing. */
export function selectDriver(choice: ZfsDriverChoice = 'auto', options: SelectDriverOptions = {}): ZfsDriver {
  const moduleLoaded = options.moduleLoaded ?? zfsModuleLoaded;
  const find = options.findProgram ?? findProgram;
  const exec = options.exec;

  const openzfs = (): ZfsDriver => {
    const zpool = find('zpool');
    if (zpool === undefined) throw new Error(`the zfs kernel module is loaded but zpool is not installed; ${INSTALL_HINT}`);
    const zfs = find('zfs') ?? 'zfs';
    return createOpenZfsDriver({ exec, zpool, zfs });
  };
  const zfsFuse = (daemon: string): ZfsDriver => {
    // Debian's zfs-fuse puts its zpool and zfs next to the daemon
    const sibling = (name: string): string => {
      const path = join(daemon, '..', name);
      return existsSync(path) ? path : (find(name) ?? name);
    };
    return createZfsFuseDriver({ exec, daemon, zpool: sibling('zpool'), zfs: sibling('zfs') });
  };

  switch (choice) {
    case 'openzfs':
      if (!moduleLoaded()) throw new Error(`the openzfs driver needs the zfs kernel module, which is not loaded (modprobe zfs); ${INSTALL_HINT}`);
      return openzfs();
    case 'zfs-fuse': {
      const daemon = find('zfs-fuse');
      if (daemon === undefined) throw new Error(`the zfs-fuse driver needs zfs-fuse, which is not installed; ${INSTALL_HINT}`);
      return zfsFuse(daemon);
    }
    case 'auto': {
      if (moduleLoaded()) return openzfs();
      const daemon = find('zfs-fuse');
      if (daemon !== undefined) return zfsFuse(daemon);
      throw new Error(`no ZFS found: the zfs kernel module is not loaded and zfs-fuse is not installed; ${INSTALL_HINT}`);
    }
  }
}

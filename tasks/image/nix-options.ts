import { readFileSync } from 'node:fs';

/** The build-users group Nix uses as root unless nix.conf names another one. */
const DEFAULT_BUILD_GROUP = 'nixbld';

let cached: readonly string[] | undefined;

/**
 * Options for every nix command the build runs. No binary cache is reachable, so none is asked
 * (Nix would lose seconds to retries); the sandbox is off because Debian's nix-bin cannot set
 * one up without a daemon. Where the `nixbld` group does not exist (Debian's nix-bin without
 * nix-setup-systemd), root builds without build users instead of failing with "the group
 * 'nixbld' specified in 'build-users-group' does not exist".
 */
export function nixOptions(groupFile = '/etc/group'): readonly string[] {
  if (cached && groupFile === '/etc/group') return cached;
  const options = ['--option', 'substituters', '', '--option', 'sandbox', 'false'];
  if (!hasGroup(groupFile, DEFAULT_BUILD_GROUP)) options.push('--option', 'build-users-group', '');
  if (groupFile === '/etc/group') cached = options;
  return options;
}

function hasGroup(groupFile: string, name: string): boolean {
  try {
    return readFileSync(groupFile, 'utf8').split('\n').some((line) => line.startsWith(`${name}:`));
  } catch {
    return false;
  }
}

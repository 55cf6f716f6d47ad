// What zfs-fuse (pool version 23, file system version 4) can set, and how a request is fitted to it.
import { zfsSizeBytes } from '../zfs-names.ts';
import type { AdaptedProperties, PropertyDefaults, PropertyRequest, ZfsProperties } from './driver.ts';

/** Pool properties zfs-fuse can set at creation (pool version 23). */
const POOL_PROPERTIES = new Set([
  'altroot', 'ashift', 'autoexpand', 'autoreplace', 'bootfs', 'cachefile', 'dedupditto',
  'delegation', 'failmode', 'listsnapshots', 'version',
]);

/** File system properties zfs-fuse can set (from `zfs get` usage, file system version 4). */
const FILESYSTEM_PROPERTIES = new Set([
  'aclinherit', 'aclmode', 'atime', 'canmount', 'casesensitivity', 'checksum', 'compression',
  'copies', 'dedup', 'devices', 'exec', 'logbias', 'mlslabel', 'mountpoint', 'nbmand',
  'normalization', 'primarycache', 'quota', 'readonly', 'recordsize', 'refquota', 'refreservation',
  'reservation', 'secondarycache', 'setuid', 'sharenfs', 'sharesmb', 'snapdir', 'utf8only',
  'version', 'volblocksize', 'volsize', 'vscan', 'xattr', 'zoned',
]);

/** Values zfs-fuse accepts where OpenZFS accepts more. */
const ALLOWED_VALUES: Readonly<Record<string, RegExp>> = {
  compression: /^(on|off|lzjb|gzip|gzip-[1-9]|zle)$/,
  xattr: /^(on|off)$/,
  checksum: /^(on|off|fletcher2|fletcher4|sha256)$/,
  dedup: /^(on|off|verify|sha256|sha256,verify)$/,
};

/** Why zfs-fuse cannot set this property, or undefined when it can. */
function zfsFuseUnsupported(scope: 'pool' | 'filesystem', name: string, value: string): string | undefined {
  if (scope === 'pool') {
    if (name.startsWith('feature@')) return 'pool version 23 has no feature flags';
    if (!POOL_PROPERTIES.has(name)) return `zfs-fuse (pool version 23) has no pool property '${name}'`;
    if (name === 'version' && !(/^\d+$/.test(value) && Number(value) <= 23)) return 'zfs-fuse supports pool versions up to 23';
    return undefined;
  }
  // user properties (module:name) and per-user quotas are free-form
  if (name.includes(':') || /^(user|group)quota@/.test(name)) return undefined;
  if (name === 'acltype') return 'zfs-fuse has no acltype property (POSIX ACLs need OpenZFS)';
  if (!FILESYSTEM_PROPERTIES.has(name)) return `zfs-fuse has no property '${name}'`;
  const allowed = ALLOWED_VALUES[name];
  if (allowed && !allowed.test(value)) return `zfs-fuse accepts ${name} ${allowed.source.slice(2, -2).replaceAll('|', ', ')}`;
  if ((name === 'recordsize' || name === 'volblocksize') && (zfsSizeBytes(value) ?? 0) > 128 * 1024) {
    return `zfs-fuse allows ${name} up to 128K`;
  }
  if (name === 'version' && !/^([1-4]|current)$/.test(value)) return 'zfs-fuse supports file system versions 1 to 4';
  return undefined;
}

/** Checks requested properties against zfs-fuse: refuses what the user asked for, drops unsupported defaults. */
export function adaptPropertiesForZfsFuse(request: PropertyRequest, defaults: PropertyDefaults): AdaptedProperties {
  const warnings: string[] = [];
  const refused: string[] = [];
  const filter = (
    scope: 'pool' | 'filesystem',
    label: string,
    properties: ZfsProperties,
    scopeDefaults: ZfsProperties,
  ): Record<string, string> => {
    const kept: Record<string, string> = {};
    for (const [name, value] of Object.entries(properties)) {
      const reason = zfsFuseUnsupported(scope, name, value);
      if (reason === undefined) kept[name] = value;
      else if (scopeDefaults[name] === value) {
        warnings.push(`zfs-fuse: dropped the default ${label}.${name}=${value} (${reason}); this image differs from an OpenZFS build`);
      } else refused.push(`${label}.${name}=${value}: ${reason}`);
    }
    return kept;
  };
  const pool = filter('pool', 'rootPoolProperties', request.pool, defaults.pool);
  const filesystem = filter('filesystem', 'rootPoolFilesystemProperties', request.filesystem, defaults.filesystem);
  const datasets: Record<string, Record<string, string>> = {};
  for (const [dataset, properties] of Object.entries(request.datasets)) {
    // dataset properties have no defaults: all of them were asked for
    datasets[dataset] = filter('filesystem', `datasets.${dataset}.properties`, properties, {});
  }
  return { pool, filesystem, datasets, warnings, refused };
}

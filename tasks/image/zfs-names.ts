// ZFS's naming rules and the values of common native properties, as the config checks them.

/** What a pool name may be, for messages. */
export const POOL_NAME_RULE =
  'a pool name starts with a letter and has only letters, digits and _ - . : (at most 239 characters); ' +
  'names starting with mirror, raidz, draid, spare or c<digit>, and log, cache, special, dedup are reserved';
/** What a dataset name may be, for messages. */
export const DATASET_NAME_RULE =
  'a dataset is "<pool>/<path>" whose components are letters, digits and _ - . : (not "." or ".."), at most 255 characters in all';
/** What a property name may be, for messages. */
export const PROPERTY_NAME_RULE =
  'a property name is a native name (lowercase letters, digits, _; like "compression"), ' +
  'name@what (like "feature@lz4_compress") or a user property with a colon (lowercase letters, digits, _ - . :; like "com.example:backup")';
/** What a property value may be, for messages. */
export const PROPERTY_VALUE_RULE =
  'a property value is 1 to 8191 characters among letters, digits and _ - . : , / @ + = % (no whitespace, quotes or shell metacharacters)';

/** Why `name` cannot be a pool name for `zpool create`, or undefined when it can. */
export function poolNameProblem(name: string): string | undefined {
  if (name.length === 0 || name.length > 239 || !/^[A-Za-z][A-Za-z0-9_.:-]*$/.test(name)) return POOL_NAME_RULE;
  if (/^(mirror|raidz|draid|spare)/.test(name) || ['log', 'cache', 'special', 'dedup'].includes(name)) {
    return `reserved name: ${POOL_NAME_RULE}`;
  }
  // Older OpenZFS and zfs-fuse take c0… for a Solaris disk name.
  if (/^c[0-9]/.test(name)) return `reserved name (looks like a disk): ${POOL_NAME_RULE}`;
  return undefined;
}

/** Why `name` cannot be a dataset strictly under `pool` (any pool when undefined), or undefined when it can. */
export function datasetNameProblem(name: string, pool: string | undefined): string | undefined {
  const [first, ...rest] = name.split('/');
  if (name.length > 255 || rest.length === 0) return DATASET_NAME_RULE;
  if (rest.some((c) => c === '.' || c === '..' || !/^[A-Za-z0-9_.:-]+$/.test(c))) return DATASET_NAME_RULE;
  if (pool !== undefined && first !== pool) return `must be under the pool: "${pool}/<path>"`;
  return undefined;
}

/** Why `name` is not a ZFS property name, or undefined when it is. */
export function propertyNameProblem(name: string): string | undefined {
  const native = /^[a-z][a-z0-9_]*$/.test(name);
  const at = /^[a-z][a-z0-9_]*@[A-Za-z0-9_.:-]+$/.test(name);
  const user = name.includes(':') && /^[a-z0-9_.:-]+$/.test(name);
  return name.length <= 256 && (native || at || user) ? undefined : PROPERTY_NAME_RULE;
}

/** Why `value` is refused as a property value, or undefined when it is allowed. */
export function propertyValueProblem(value: string): string | undefined {
  return value.length <= 8191 && /^[A-Za-z0-9_.:,/@+=%-]+$/.test(value) ? undefined : PROPERTY_VALUE_RULE;
}

/** Where a property is set: `zpool create -o` (pool) or a file system (`-O`, `zfs create -o`). */
export type PropertyScope = 'pool' | 'filesystem';

/** What values one native property takes: a test, and the words a message uses for it. */
type ValueRule = { allows: (value: string) => boolean; rule: string };

/** Bytes in a ZFS size ("512", "1.5G", "128K", "10GiB"), as `zfs` reads it; undefined when it is not one. */
export function zfsSizeBytes(value: string): number | undefined {
  // zfs takes one of B K M G T P E Z, and K… also as KB or KiB
  const match = /^(\d+(?:\.\d*)?|\.\d+)(?:([BKMGTPEZ])|([KMGTPEZ])I?B)?$/i.exec(value);
  if (!match) return undefined;
  const unit = (match[2] ?? match[3] ?? 'B').toUpperCase();
  return Number(match[1]) * 1024 ** 'BKMGTPEZ'.indexOf(unit);
}

const oneOf = (...values: string[]): ValueRule => ({ allows: (v) => values.includes(v), rule: `one of ${values.join(', ')}` });
const sizeOr = (...words: string[]): ValueRule => ({
  allows: (v) => words.includes(v) || zfsSizeBytes(v) !== undefined,
  rule: `a size like "10G", "512M" or a number of bytes, or ${words.join(' or ')}`,
});
const ON_OFF = oneOf('on', 'off');

/**
 * Values of common native properties whose values are a fixed set or a size, as OpenZFS takes them
 * (a driver may refuse more, like zfs-fuse's xattr=sa). Any other property, and every user
 * property (with a colon), is checked only by the character rule.
 */
const PROPERTY_VALUES: Readonly<Record<PropertyScope, Readonly<Record<string, ValueRule>>>> = {
  pool: { autoexpand: ON_OFF, autoreplace: ON_OFF, listsnapshots: ON_OFF },
  filesystem: {
    atime: ON_OFF,
    relatime: ON_OFF,
    readonly: ON_OFF,
    exec: ON_OFF,
    setuid: ON_OFF,
    devices: ON_OFF,
    xattr: oneOf('on', 'off', 'sa', 'dir'),
    canmount: oneOf('on', 'off', 'noauto'),
    sync: oneOf('standard', 'always', 'disabled'),
    quota: sizeOr('none'),
    refquota: sizeOr('none'),
    reservation: sizeOr('none'),
    refreservation: sizeOr('none', 'auto'),
    recordsize: {
      allows: (v) => {
        const bytes = zfsSizeBytes(v);
        // OpenZFS 2.2 and later take up to 16M; zfs-fuse's own limit is checked by its driver
        return bytes !== undefined && bytes >= 512 && bytes <= 16 * 1024 * 1024 && Number.isInteger(Math.log2(bytes));
      },
      rule: 'a power of two from 512 to 16M, like "128K" or "1M"',
    },
    // the image's fileSystems are legacy mounts at each dataset's "mount"; none is for a dataset never mounted
    // a dataset with a "mount" must end up legacy (checked with the datasets); one without may be
    // left to ZFS to mount where its mountpoint says, or never (none)
    mountpoint: {
      allows: (v) => v === 'legacy' || v === 'none' || (v.startsWith('/') && !v.split('/').some((c) => c === '.' || c === '..')),
      rule: 'legacy, none, or an absolute path (for a dataset without "mount", which ZFS then mounts itself)',
    },
  },
};

/** Why `value` is not a value the native property `name` takes where `scope` says, or undefined when it is (or the property is not in the table). */
export function propertyValueRuleProblem(scope: PropertyScope, name: string, value: string): string | undefined {
  const table = PROPERTY_VALUES[scope];
  // hasOwn: a property named like an Object method ("constructor") is not in the table
  const rule = Object.hasOwn(table, name) ? table[name] : undefined;
  return rule === undefined || rule.allows(value) ? undefined : `must be ${rule.rule}`;
}

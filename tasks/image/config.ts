// The image config: the seed's arguments as a JSON file, checked before anything runs.
import { resolve } from 'node:path';
import * as z from 'zod';
import { MIN_BOOT_SIZE_MIB } from './boot-disk.ts';
import { hostHasName, isPlainObject, misplacedFiles, nixPathChannel, ownerName, pathKind, storePath, unknownOwners, type PathKind } from './config-host.ts';
import {
  DATASET_NAME_RULE,
  datasetNameProblem,
  POOL_NAME_RULE,
  poolNameProblem,
  PROPERTY_NAME_RULE,
  PROPERTY_VALUE_RULE,
  propertyNameProblem,
  propertyValueProblem,
  propertyValueRuleProblem,
  type PropertyScope,
} from './zfs-names.ts';

/** Disk image formats, with the seed's names. */
export const imageFormats = ['raw', 'qcow2', 'qcow2-compressed', 'vdi', 'vpc'] as const;

/** One of {@link imageFormats}. */
export type ImageFormat = (typeof imageFormats)[number];

/** Smallest bootSize in MiB (why: see boot-disk.ts). */
export { MIN_BOOT_SIZE_MIB } from './boot-disk.ts';

/** Smallest rootSize in MiB: ZFS refuses vdevs under 64 MiB. */
const MIN_ROOT_SIZE_MIB = 64;

/** One problem in a config: `path` names the field ("contents[0].mode"), `message` says what is allowed. */
export type ConfigIssue = { path: string; message: string };

const IMAGE_PATH_RULE =
  'an absolute, normal path in the image (starts with "/", no "." or ".." or empty components, no trailing "/", no control characters)';

const utf8 = new TextEncoder();

/** Why `path` is not an absolute, normal path ("/" included), or undefined when it is. */
function imagePathProblem(path: string): string | undefined {
  if (path === '/') return undefined;
  if (!path.startsWith('/') || /[\x00-\x1f\x7f]/.test(path)) return `must be ${IMAGE_PATH_RULE}`;
  const parts = path.slice(1).split('/');
  const bad = parts.some((p) => p === '' || p === '.' || p === '..' || utf8.encode(p).length > 255);
  return bad ? `must be ${IMAGE_PATH_RULE}` : undefined;
}

// Every object refuses unknown keys and lists the allowed ones, so typos are caught.
function strict<T extends z.core.$ZodLooseShape>(shape: T, what: string) {
  const allowed = Object.keys(shape).join(', ');
  return z.strictObject(shape, {
    error: (iss) => (iss.code === 'unrecognized_keys' ? `unknown key; allowed keys: ${allowed}` : `must be ${what}`),
  });
}


// Cross-field checks run even when other fields are wrong, so one run reports everything.
const whenObject = { when: (p: { value: unknown }) => isPlainObject(p.value) };

function checked(problem: (s: string) => string | undefined, typeError = 'must be a string') {
  return z.string({ error: typeError }).superRefine((s, ctx) => {
    const why = problem(s);
    const shown = s.length > 60 ? `${JSON.stringify(s.slice(0, 60))}…` : JSON.stringify(s);
    if (why !== undefined) ctx.addIssue({ code: 'custom', message: `${why} (got ${shown})` });
  });
}

/** Largest bootSize in MiB: FAT32 counts its 512-byte sectors in 32 bits, so an ESP stops at 2 TiB. */
const MAX_BOOT_SIZE_MIB = 2 * 1024 * 1024;

/** Largest size in MiB whose byte count is still an exact number here (2^53 bytes, 8 PiB). */
const MAX_SIZE_MIB = 2 ** 33;

function sizeMiB(min: number, tooSmall: string, max = MAX_SIZE_MIB, tooBig = `must be at most ${MAX_SIZE_MIB} MiB (8 PiB)`) {
  // the minimum is in both messages: a string "64" is as wrong as 20
  return z.int({ error: `must be an integer number of MiB, at least ${min} and at most ${max}` }).min(min, { error: tooSmall }).max(max, { error: tooBig });
}

function propertiesSchema(scope: PropertyScope) {
  return z
    .record(z.string(), checked(propertyValueProblem, `must be a string: ${PROPERTY_VALUE_RULE}`), {
      error: 'must be an object of ZFS property names to string values',
    })
    .superRefine((props, ctx) => {
      for (const [name, value] of Object.entries(props)) {
        const why = propertyNameProblem(name);
        if (why !== undefined) {
          ctx.addIssue({ code: 'custom', path: [name], message: `invalid property name: ${why} (got ${JSON.stringify(name)})` });
          continue;
        }
        // a value with bad characters is already reported by the value schema
        if (typeof value !== 'string' || propertyValueProblem(value) !== undefined) continue;
        const wrong = propertyValueRuleProblem(scope, name, value);
        if (wrong !== undefined) ctx.addIssue({ code: 'custom', path: [name], message: `${wrong} (got ${JSON.stringify(value)})` });
      }
    }, whenObject);
}

const mountSchema = checked((s) => imagePathProblem(s), `must be a string: the mount point, ${IMAGE_PATH_RULE}`);

const datasetSchema = strict(
  { mount: mountSchema.optional(), properties: propertiesSchema('filesystem').default({}) },
  'an object {mount?, properties?}',
);

/** Why install would overwrite (or trip over) what contents put at `target`, if it would. */
function installOwnedProblem(target: string): string | undefined {
  if (target === '/etc/NIXOS') return 'is written by install itself (an empty marker, after contents): what is copied there would be lost';
  const inside = (dir: string): boolean => target === dir || target.startsWith(`${dir}/`);
  if (inside('/nix/store') || inside('/nix/var/nix')) {
    return 'lies in the Nix store or its database, which install fills from the system closure: put it elsewhere, or make it part of the system';
  }
  return undefined;
}

const octalMode = /^0?[0-7]{3,4}$/;
// ids are 32 bits, and chown takes the last one, (uid_t)-1, to mean "leave unchanged" and refuses it
const MAX_OWNER_ID = 4294967294;
const OWNER_RULE = `must be a user or group name (letters, digits, _ . -, not starting with a digit or -) or a numeric id from 0 to ${MAX_OWNER_ID}`;

/** Why `owner` cannot be given to chown as a user or group, or undefined when it can. */
function ownerProblem(owner: string): string | undefined {
  if (/^[0-9]+$/.test(owner)) return Number(owner) <= MAX_OWNER_ID ? undefined : `a numeric id must be from 0 to ${MAX_OWNER_ID} (ids are 32 bits, and chown refuses ${MAX_OWNER_ID + 1})`;
  return ownerName.test(owner) ? undefined : OWNER_RULE;
}

const contentSchema = strict(
  {
    source: z.string({ error: 'must be a string: the file or folder to copy' }).min(1, { error: 'must not be empty' }),
    target: checked(
      (s) => (s === '/' ? 'must name a path inside the image, not "/" itself' : (imagePathProblem(s) ?? installOwnedProblem(s))),
      `must be a string: ${IMAGE_PATH_RULE}`,
    ),
    mode: z
      .string({ error: 'must be an octal mode string like "0644" or "755"' })
      .regex(octalMode, { error: 'must be an octal mode string like "0644" or "755"' })
      .optional(),
    user: checked(ownerProblem, OWNER_RULE).optional(),
    group: checked(ownerProblem, OWNER_RULE).optional(),
  },
  'an object {source, target, mode?, user?, group?}',
);

const contentsSchema = z
  .array(contentSchema, { error: 'must be an array of {source, target, mode?, user?, group?}' })
  .superRefine((items, ctx) => {
    const seen = new Set<string>();
    items.forEach((item, i) => {
      const target = isPlainObject(item) ? item['target'] : undefined;
      if (typeof target !== 'string') return;
      if (seen.has(target)) ctx.addIssue({ code: 'custom', path: [i, 'target'], message: `"${target}" is already a target of an earlier entry` });
      seen.add(target);
    });
  }, { when: (p) => Array.isArray(p.value) });

const SYSTEM_CHOICES =
  'exactly one of {"toplevel": "/nix/store/<hash>-<name>"}, {"flake": "<ref>#<name>"}, {"expression": "<file.nix>", "attr"?: "<attr>"}';
// the name is quoted in the attribute path, so it may hold dots but not a double quote
const flakeRef = /^[^#\s]+#[^#\s"]+$/;
const noSpace = /^\S+$/;

/** The system to install: a built toplevel, a flake's nixosConfigurations entry, or a Nix file (and attribute). */
export type SystemSpec = { toplevel: string } | { flake: string } | { expression: string; attr?: string };

const systemSchema = strict(
  {
    toplevel: z
      .string({ error: 'must be a string: a store path "/nix/store/<32-character hash>-<name>"' })
      .regex(storePath, { error: 'must be a store path "/nix/store/<32-character hash>-<name>"' })
      .optional(),
    flake: z
      .string({ error: 'must be a string "<flake ref>#<configuration name>"' })
      .regex(flakeRef, { error: 'must be "<flake ref>#<configuration name>" without whitespace (and no double quote in the name), like ".#demo"' })
      .optional(),
    expression: z
      .string({ error: 'must be a string: a Nix file' })
      .min(1, { error: 'must be a Nix file' })
      .optional(),
    attr: z
      .string({ error: 'must be a string: an attribute path' })
      .regex(noSpace, { error: 'must be a non-empty attribute path without whitespace' })
      .optional(),
  },
  `an object with ${SYSTEM_CHOICES}`,
)
  .superRefine((s, ctx) => {
    const kinds = (['toplevel', 'flake', 'expression'] as const).filter((k) => s[k] !== undefined);
    if (kinds.length !== 1) ctx.addIssue({ code: 'custom', message: `must be ${SYSTEM_CHOICES}; got ${kinds.length === 0 ? 'none' : kinds.join(' and ')}` });
    if (s.attr !== undefined && s.expression === undefined) ctx.addIssue({ code: 'custom', path: ['attr'], message: 'attr goes only with expression' });
  }, whenObject)
  .transform((s): SystemSpec => {
    if (s.toplevel !== undefined) return { toplevel: s.toplevel };
    if (s.flake !== undefined) return { flake: s.flake };
    return s.attr === undefined ? { expression: s.expression ?? '' } : { expression: s.expression ?? '', attr: s.attr };
  });

const datasetsSchema = z.record(z.string(), datasetSchema, {
  error: 'must be an object of "<pool>/<path>" to {mount?, properties?}',
});

// Names, unique mounts and the root mount need the pool name, so they are checked on the whole config.
function checkDatasets(config: Record<string, unknown>, ctx: z.core.$RefinementCtx) {
  const datasets = config['datasets'];
  if (!isPlainObject(datasets)) return;
  const poolName = config['rootPoolName'];
  const pool = typeof poolName === 'string' && poolNameProblem(poolName) === undefined ? poolName : undefined;
  const mounts = new Map<string, string>();
  for (const [name, dataset] of Object.entries(datasets)) {
    const why = datasetNameProblem(name, pool);
    if (why !== undefined) ctx.addIssue({ code: 'custom', path: ['datasets', name], message: `invalid dataset name: ${why}` });
    const mount = isPlainObject(dataset) ? dataset['mount'] : undefined;
    if (typeof mount !== 'string' || imagePathProblem(mount) !== undefined) continue;
    const other = mounts.get(mount);
    if (other !== undefined) {
      ctx.addIssue({ code: 'custom', path: ['datasets', name, 'mount'], message: `"${mount}" is already the mount of ${other}; mounts must be unique` });
    }
    mounts.set(mount, other ?? name);
  }
  if (!mounts.has('/')) {
    ctx.addIssue({ code: 'custom', path: ['datasets'], message: `exactly one dataset must mount "/", like "${pool ?? 'tank'}/root": {"mount": "/"}` });
  }
  checkUnmountable(config, datasets, ctx);
}

// A mounted dataset whose mountpoint is none, its own or inherited, fails mount -t zfs and the image's fileSystems.
function checkUnmountable(config: Record<string, unknown>, datasets: Record<string, unknown>, ctx: z.core.$RefinementCtx) {
  const mountpointIn = (props: unknown): unknown => (isPlainObject(props) ? props['mountpoint'] : undefined);
  const own = (name: string): unknown => mountpointIn(isPlainObject(datasets[name]) ? datasets[name]['properties'] : undefined);
  let unsetReported = false;
  for (const [name, dataset] of Object.entries(datasets)) {
    if (!isPlainObject(dataset) || typeof dataset['mount'] !== 'string') continue;
    // its own value, else the nearest listed parent's, else the root file system's (parents zfs create -p makes inherit that)
    const parents = Object.keys(datasets).filter((p) => name.startsWith(`${p}/`)).sort((a, b) => b.length - a.length);
    const setter = [name, ...parents].find((d) => own(d) !== undefined);
    const value = setter === undefined ? mountpointIn(config['rootPoolFilesystemProperties']) : own(setter);
    if (value === undefined) {
      // unset everywhere: ZFS's default, a path, which a legacy mount refuses (said once, not per dataset)
      if (!unsetReported) {
        unsetReported = true;
        ctx.addIssue({
          code: 'custom',
          path: ['rootPoolFilesystemProperties'],
          message: `has no mountpoint, so datasets get ZFS's default (a path), but a dataset with a mount needs mountpoint=legacy (the image's fileSystems mount it with mount -t zfs): add "mountpoint": "legacy", or set it on each dataset with a mount`,
        });
      }
      continue;
    }
    if (typeof value !== 'string' || value === 'legacy') continue;
    const needs = `a dataset with a mount needs mountpoint=legacy (the image's fileSystems mount it with mount -t zfs, which refuses ${value === 'none' ? 'none' : 'a dataset ZFS mounts itself'})`;
    if (setter === name) {
      ctx.addIssue({ code: 'custom', path: ['datasets', name, 'properties', 'mountpoint'], message: `is ${value}, but ${needs}` });
    } else {
      const from = setter === undefined ? 'rootPoolFilesystemProperties' : `datasets.${setter}`;
      ctx.addIssue({ code: 'custom', path: ['datasets', name, 'mount'], message: `the dataset inherits mountpoint=${value} from ${from}, but ${needs}: set mountpoint to legacy on it` });
    }
  }
}

/** The seed's default pool properties (`zpool create -o`). */
export const DEFAULT_POOL_PROPERTIES: Readonly<Record<string, string>> = { autoexpand: 'on' };

/** The seed's default root file system properties (`zpool create -O`). */
export const DEFAULT_FILESYSTEM_PROPERTIES: Readonly<Record<string, string>> = {
  acltype: 'posixacl',
  atime: 'off',
  compression: 'on',
  mountpoint: 'legacy',
  xattr: 'sa',
};

/** The image config schema: every field of the seed with its default and rules; unknown keys are refused at every level. */
export const imageConfigSchema = strict(
  {
    name: z.string({ error: 'must be a string' }).min(1, { error: 'must not be empty' }).default('nixos-disk-image'),
    // VHD is qemu-img's vpc: a user asking for "vhd" is told so
    format: z.enum(imageFormats, { error: `must be one of ${imageFormats.join(', ')} (VHD is vpc)` }).default('raw'),
    bootSize: sizeMiB(
      MIN_BOOT_SIZE_MIB,
      `must be at least ${MIN_BOOT_SIZE_MIB} MiB: the ESP gets bootSize - 3 MiB and FAT32 needs ${MIN_BOOT_SIZE_MIB - 3} MiB for its 65525 clusters`,
      MAX_BOOT_SIZE_MIB,
      `must be at most ${MAX_BOOT_SIZE_MIB} MiB (2 TiB): FAT32 counts the ESP's 512-byte sectors in 32 bits`,
    ).default(1024),
    rootSize: sizeMiB(MIN_ROOT_SIZE_MIB, `must be at least ${MIN_ROOT_SIZE_MIB} MiB, the smallest ZFS vdev`).default(2048),
    rootPoolName: checked(poolNameProblem, `must be a string: ${POOL_NAME_RULE}`).default('tank'),
    rootPoolProperties: propertiesSchema('pool').default({ ...DEFAULT_POOL_PROPERTIES }),
    rootPoolFilesystemProperties: propertiesSchema('filesystem').default({ ...DEFAULT_FILESYSTEM_PROPERTIES }),
    // prefault, not default: an absent datasets still has to pass the root-mount check.
    datasets: datasetsSchema.prefault({}),
    contents: contentsSchema.default([]),
    configFile: z
      .string({ error: 'must be null or a string: the path of a Nix file' })
      .min(1, { error: 'must be null or the path of a Nix file' })
      .nullable()
      .default(null),
    postVM: z.string({ error: 'must be a string of shell code' }).default(''),
    includeChannel: z.boolean({ error: 'must be true or false' }).default(true),
    channelSource: z.string({ error: 'must be a string: the path of a nixpkgs source tree' }).min(1, { error: 'must not be empty' }).optional(),
    memSize: sizeMiB(256, 'must be at least 256 MiB').default(1024),
    system: systemSchema,
  },
  'a JSON object',
).superRefine(checkDatasets, whenObject);

/** The parsed config with defaults applied (relative paths resolved when it comes from {@link parseImageConfig}). */
export type ImageConfig = z.output<typeof imageConfigSchema>;

/** A key as a path shows it: quoted when it is empty or holds a control character, which would not show. */
function shownKey(key: string): string {
  return key === '' || /[\x00-\x1f\x7f]/.test(key) ? JSON.stringify(key) : key;
}

/** "datasets.tank/root.mount", "contents[0].mode", `rootPoolProperties.""`: how an issue names a field. */
function formatPath(path: readonly PropertyKey[]): string {
  return path.reduce<string>((out, part, i) => {
    if (typeof part === 'number') return `${out}[${part}]`;
    return i === 0 ? shownKey(String(part)) : `${out}.${shownKey(String(part))}`;
  }, '');
}

// Zod leaves the input out of issues, so a missing field is found by walking the raw config.
function isMissing(raw: unknown, path: readonly PropertyKey[]): boolean {
  let value: unknown = raw;
  for (const part of path) {
    if (typeof value !== 'object' || value === null) return true;
    value = (value as Record<PropertyKey, unknown>)[part];
  }
  return value === undefined;
}

function toConfigIssues(raw: unknown, issues: readonly z.core.$ZodIssue[]): ConfigIssue[] {
  return issues.flatMap((iss) => {
    if (iss.code === 'unrecognized_keys') return iss.keys.map((key) => ({ path: formatPath([...iss.path, key]), message: iss.message }));
    const message = iss.code === 'invalid_type' && isMissing(raw, iss.path) ? `is required; ${iss.message}` : iss.message;
    return [{ path: formatPath(iss.path), message }];
  });
}

// A flake ref that is a relative path is taken from the config's folder, like other paths.
function resolveFlake(flake: string, baseDir: string): string {
  const hash = flake.indexOf('#');
  const ref = flake.slice(0, hash);
  const isRelative = ref === '.' || ref === '..' || ref.startsWith('./') || ref.startsWith('../');
  return isRelative ? `${resolve(baseDir, ref)}${flake.slice(hash)}` : flake;
}

// Zod skips a record's "__proto__" key without a word (assigning it would set the prototype), so the
// raw JSON is looked at; strict objects already refuse it as an unknown key.
function protoKeys(raw: unknown): ConfigIssue[] {
  if (!isPlainObject(raw)) return [];
  const records: [PropertyKey[], unknown, string][] = [
    [['rootPoolProperties'], raw['rootPoolProperties'], `invalid property name: ${PROPERTY_NAME_RULE}`],
    [['rootPoolFilesystemProperties'], raw['rootPoolFilesystemProperties'], `invalid property name: ${PROPERTY_NAME_RULE}`],
    [['datasets'], raw['datasets'], `invalid dataset name: ${DATASET_NAME_RULE}`],
  ];
  const datasets = raw['datasets'];
  if (isPlainObject(datasets)) {
    for (const [name, dataset] of Object.entries(datasets)) {
      if (isPlainObject(dataset)) records.push([['datasets', name, 'properties'], dataset['properties'], `invalid property name: ${PROPERTY_NAME_RULE}`]);
    }
  }
  return records
    .filter(([, record]) => isPlainObject(record) && Object.hasOwn(record, '__proto__'))
    .map(([path, , rule]) => ({ path: formatPath([...path, '__proto__']), message: `${rule} (got "__proto__")` }));
}

/**
 * Parses a config read from JSON: applies defaults, checks every rule, resolves relative
 * paths against `baseDir` and checks that contents' sources, configFile (a file), channelSource
 * (a folder), system.expression (a file, or a folder with default.nix) and system.toplevel exist
 * (with `kindOf`, default {@link pathKind}). With includeChannel and no channelSource, channelSource
 * is the `nixpkgs=` folder of `nixPath` (default: the environment's NIX_PATH). Returns every issue at once.
 */
export function parseImageConfig(
  raw: unknown,
  options: {
    baseDir: string;
    kindOf?: (p: string) => PathKind;
    hasName?: (database: 'passwd' | 'group', name: string) => boolean;
    nixPath?: string | undefined;
    /** Whether system.toplevel must exist on this host (default true; false for commands that only look). */
    toplevelMustExist?: boolean;
  },
): { ok: true; value: ImageConfig } | { ok: false; errors: ConfigIssue[] } {
  const { baseDir, kindOf = pathKind, hasName = hostHasName } = options;
  const nixPath = 'nixPath' in options ? options.nixPath : process.env['NIX_PATH'];
  const parsed = imageConfigSchema.safeParse(raw);
  const schemaIssues = [...protoKeys(raw), ...(parsed.success ? [] : toConfigIssues(raw, parsed.error.issues))];
  const flagged = new Set(schemaIssues.map((i) => i.path));
  const channel = nixPathChannel(raw, nixPath, kindOf);
  const hostIssues = [...misplacedFiles(raw, baseDir, kindOf, options.toplevelMustExist ?? true), ...unknownOwners(raw, hasName), ...(channel && 'issue' in channel ? [channel.issue] : [])];
  const errors = [...schemaIssues, ...hostIssues.filter((i) => !flagged.has(i.path))];
  if (!parsed.success || errors.length > 0) return { ok: false, errors };
  const config = parsed.data;
  const system = config.system;
  return {
    ok: true,
    value: {
      ...config,
      contents: config.contents.map((c) => ({ ...c, source: resolve(baseDir, c.source) })),
      configFile: config.configFile === null ? null : resolve(baseDir, config.configFile),
      ...(config.channelSource === undefined ? {} : { channelSource: resolve(baseDir, config.channelSource) }),
      ...(channel && 'source' in channel ? { channelSource: channel.source } : {}),
      system:
        'expression' in system
          ? { ...system, expression: resolve(baseDir, system.expression) }
          : 'flake' in system
            ? { flake: resolveFlake(system.flake, baseDir) }
            : system,
    },
  };
}

/** One line per issue: "config: <path>: <message>" ("config: <message>" for the whole file). */
export function formatConfigIssues(issues: readonly ConfigIssue[]): string {
  return issues.map((i) => (i.path === '' ? `config: ${i.message}` : `config: ${i.path}: ${i.message}`)).join('\n');
}

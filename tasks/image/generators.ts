// Pure generators: the commands' argv and the Nix files the stages write, from a parsed config.
import type { ImageFormat } from './config.ts';

/** A dataset as the config gives it: an optional mount point and ZFS properties. */
export type DatasetSpec = { mount?: string | undefined; properties?: Readonly<Record<string, string>> | undefined };

/** The datasets record: "<pool>/<path>" to its spec. */
export type Datasets = Readonly<Record<string, DatasetSpec>>;

/** A dataset with its name, in a generated order. */
export type NamedDataset = { name: string; mount: string | undefined; properties: Readonly<Record<string, string>> };

/** A dataset that has a mount point. */
export type MountedDataset = { name: string; mount: string };

// Code-unit order, so the result does not depend on the locale.
function compareText(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** Datasets in `zfs create` order: fewer path components first, then by name, so parents come before children. */
export function datasetCreationOrder(datasets: Datasets): NamedDataset[] {
  // The seed sorts by name length; on valid input both put a parent first, since a parent's
  // name is a strict prefix of its child's ("tank/a" of "tank/a/b") and so both shorter and shallower.
  const depth = (name: string) => name.split('/').length;
  return Object.entries(datasets)
    .map(([name, d]) => ({ name, mount: d.mount, properties: d.properties ?? {} }))
    .sort((a, b) => depth(a.name) - depth(b.name) || compareText(a.name, b.name));
}

/** Mount order of two paths: the shorter first (a parent before its children), ties in code-unit order. */
export function compareMounts(a: string, b: string): number {
  return a.length - b.length || compareText(a, b);
}

/** `items` in mount order of their `mount` (the drivers' order too); reversed, the order to unmount them. */
export function inMountOrder<T extends { readonly mount: string }>(items: readonly T[]): T[] {
  return [...items].sort((a, b) => compareMounts(a.mount, b.mount));
}

/** Datasets with a mount in mount order: shortest mount path first, ties by mount path. */
export function mountOrder(datasets: Datasets): MountedDataset[] {
  return inMountOrder(Object.entries(datasets).flatMap(([name, d]) => (d.mount === undefined ? [] : [{ name, mount: d.mount }])));
}

/**
 * The `compression` a file at `imagePath` is written with: that of the mounted dataset holding the
 * path (the longest mount that contains it), else inherited from its nearest configured parent
 * dataset, else the pool's file-system property; `off` when none sets it.
 */
export function compressionAt(datasets: Datasets, poolProperties: Readonly<Record<string, string>>, imagePath: string): string {
  const holder = mountOrder(datasets)
    .filter(({ mount }) => mount === '/' || imagePath === mount || imagePath.startsWith(`${mount}/`))
    .pop();
  for (let name = holder?.name; name !== undefined && name.includes('/'); name = name.slice(0, name.lastIndexOf('/'))) {
    const own = datasets[name]?.properties?.['compression'];
    if (own !== undefined) return own;
  }
  return poolProperties['compression'] ?? 'off';
}

/** Datasets with a mount in unmount order: the exact reverse of {@link mountOrder}. */
export function unmountOrder(datasets: Datasets): MountedDataset[] {
  return mountOrder(datasets).reverse();
}

/** `value` as a Nix double-quoted string literal: escapes `"`, `\`, `${` and line breaks. */
function nixString(value: string): string {
  const escaped = value
    .replace(/[\\"]/g, (c) => `\\${c}`)
    .replace(/\$\{/g, '\\${')
    .replace(/\n/g, '\\n')
    .replace(/\r/g, '\\r')
    .replace(/\t/g, '\\t');
  return `"${escaped}"`;
}

/** The generated Nix module: `fileSystems."<mount>" = { device = "<dataset>"; fsType = "zfs"; };` per mounted dataset, in mount order. */
export function fileSystemsNix(datasets: Datasets): string {
  const lines = mountOrder(datasets).map(
    ({ name, mount }) => `  fileSystems.${nixString(mount)} = { device = ${nixString(name)}; fsType = "zfs"; };`,
  );
  return ['# Generated from the image config: the ZFS datasets and their mount points.', '{', ...lines, '}', ''].join('\n');
}

/**
 * Where the install stage writes the NixOS configuration in the image: `configuration` imports
 * `fileSystems` (from {@link fileSystemsNix}) and, when the config has a configFile, that file
 * copied as `userConfiguration`; all three sit side by side in `dir`. Copies, not symlinks, so
 * they are mutable like the seed's.
 */
export const nixosConfigLayout = {
  dir: '/etc/nixos',
  configuration: 'configuration.nix',
  fileSystems: 'zfs-filesystems.nix',
  userConfiguration: 'user-configuration.nix',
} as const;

// A Nix path literal only takes these characters; "./" keeps it relative to configuration.nix.
function nixRelativePath(file: string): string {
  const parts = file.split('/');
  if (parts.some((p) => p === '' || p === '.' || p === '..' || !/^[A-Za-z0-9._+-]+$/.test(p))) {
    throw new Error(`cannot import ${JSON.stringify(file)}: use a relative file name of letters, digits and . _ + -`);
  }
  return `./${file}`;
}

/**
 * The image's /etc/nixos/configuration.nix: `{ imports = [ ./<fileSystemsFile> ./<configFile> ]; }`,
 * both names relative to /etc/nixos (see {@link nixosConfigLayout}); no configFile, no second import.
 */
export function configurationNix(fileSystemsFile: string, configFile: string | null): string {
  const imports = [fileSystemsFile, ...(configFile === null ? [] : [configFile])].map(nixRelativePath);
  return [
    '# Generated by the image build: the ZFS file systems and the configuration the image was built with.',
    '{',
    `  imports = [ ${imports.join(' ')} ];`,
    '}',
    '',
  ].join('\n');
}

// A file argument that starts with "-" would be read as an option.
function fileArg(path: string): string {
  return path.startsWith('-') ? `./${path}` : path;
}

/** `flag name=value` pairs for an argv, sorted by name so the same properties give the same command. */
function propertyArgs(flag: '-o' | '-O', properties: Readonly<Record<string, string>>): string[] {
  return Object.keys(properties)
    .sort(compareText)
    .flatMap((name) => [flag, `${name}=${properties[name] ?? ''}`]);
}

/** What `zpool create` needs: the pool, its vdev, the altroot and properties, and driver specifics. */
export interface ZpoolCreate {
  readonly pool: string;
  readonly vdev: string;
  /** `-R`: every mount lands under it, never on the host, and the host's cache file is left alone. */
  readonly altroot: string;
  readonly poolProperties: Readonly<Record<string, string>>;
  readonly filesystemProperties: Readonly<Record<string, string>>;
  /** `-t` (OpenZFS): the host sees this name while the pool keeps its own on disk. */
  readonly tempName?: string | undefined;
  /** `-m` (zfs-fuse, which ignores `-O mountpoint` under `-R`): the root dataset's mountpoint. */
  readonly mountpoint?: string | undefined;
}

/** Arguments to `zpool`: `create -R altroot [-t tempName] [-m mountpoint] -o k=v… -O k=v… <pool> <vdev>`. */
export function zpoolCreateArgs(create: ZpoolCreate): string[] {
  return [
    'create',
    '-R',
    create.altroot,
    ...(create.tempName === undefined ? [] : ['-t', create.tempName]),
    ...(create.mountpoint === undefined ? [] : ['-m', create.mountpoint]),
    ...propertyArgs('-o', create.poolProperties),
    ...propertyArgs('-O', create.filesystemProperties),
    create.pool,
    fileArg(create.vdev),
  ];
}

/** Arguments to `zfs` that create dataset `name` and missing parents: `create -p -o k=v… <name>`. */
export function zfsCreateArgs(name: string, properties: Readonly<Record<string, string>> = {}): string[] {
  return ['create', '-p', ...propertyArgs('-o', properties), name];
}

const extensions: Record<ImageFormat, string> = {
  raw: 'img',
  qcow2: 'qcow2',
  'qcow2-compressed': 'qcow2',
  vdi: 'vdi',
  vpc: 'vhd',
};

/** The output file extension of a format: raw→img, qcow2 and qcow2-compressed→qcow2, vdi→vdi, vpc→vhd. */
export function formatExtension(format: ImageFormat): string {
  return extensions[format];
}

/** Arguments to `qemu-img` that convert raw `src` to `dest`: `convert -f raw -O <fmt> [-c] <src> <dest>`. */
export function qemuImgConvertArgs(format: ImageFormat, src: string, dest: string): string[] {
  const compressed = format === 'qcow2-compressed';
  // without force_size a VHD rounds its size up to a CHS geometry, and the GPT backup header and
  // ZFS's end labels are then no longer at the end of the disk
  const options = format === 'vpc' ? ['-o', 'force_size=on'] : compressed ? ['-c'] : [];
  return ['convert', '-f', 'raw', '-O', compressed ? 'qcow2' : format, ...options, fileArg(src), fileArg(dest)];
}

/** The names of the two output images in the output folder: nixos.boot.<ext> and nixos.root.<ext>. */
export function outputFileNames(format: ImageFormat): { boot: string; root: string } {
  const ext = formatExtension(format);
  return { boot: `nixos.boot.${ext}`, root: `nixos.root.${ext}` };
}

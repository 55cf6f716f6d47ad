import { mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import type { ConfigIssue, ImageConfig } from '../../tasks/image/config.ts';
import { hostHasName, type PathKind } from '../../tasks/image/config-host.ts';
import { nixpkgsInNixPath, parseNixPath } from '../../tasks/image/nix-path.ts';
import { MIN_BOOT_SIZE_MIB, formatConfigIssues, parseImageConfig } from '../../tasks/image/config.ts';

const toplevel = `/nix/store/${'0123456789abcdfghijklmnpqrsvwxyz'}-nixos-system-demo`;
const minimal = { system: { toplevel }, datasets: { 'tank/root': { mount: '/' } } };
// for the tests that look at the real file system: this file stands in for a Nix file
const onThisHost = { system: { expression: fileURLToPath(import.meta.url) }, datasets: minimal.datasets, includeChannel: false };
const baseDir = '/configs';
// Paths containing "missing" are absent, nixpkgs and "folder" paths are folders (holding a
// default.nix, except "bare" ones), the rest files, so these tests do not touch the file system.
const kindOf = (p: string): PathKind =>
  p.includes('missing') ? undefined
  : p.endsWith('/default.nix') ? (p.includes('bare') ? undefined : 'file')
  : /nixpkgs|folder/.test(p) ? 'folder'
  : 'file';
const nixPath = 'nixpkgs=/host/nixpkgs';

function parse(raw: unknown, options: { nixPath?: string } = {}) {
  return parseImageConfig(raw, { baseDir, kindOf, nixPath, ...options });
}

function valid(extra: Record<string, unknown> = {}): ImageConfig {
  const result = parse({ ...minimal, ...extra });
  if (!result.ok) throw new Error(formatConfigIssues(result.errors));
  return result.value;
}

function issues(extra: Record<string, unknown>): ConfigIssue[] {
  const result = parse({ ...minimal, ...extra });
  if (result.ok) throw new Error(`accepted: ${JSON.stringify(extra)}`);
  return result.errors;
}

/** The issue at `path`; fails when there is none. */
function issueAt(extra: Record<string, unknown>, path: string): ConfigIssue {
  const all = issues(extra);
  const found = all.find((i) => i.path === path);
  if (found === undefined) throw new Error(`no issue at ${path}; got:\n${formatConfigIssues(all)}`);
  return found;
}

describe('defaults', () => {
  it('fills every field the seed defaults', () => {
    const config = valid();
    expect(config).toEqual({
      name: 'nixos-disk-image',
      format: 'raw',
      bootSize: 1024,
      rootSize: 2048,
      rootPoolName: 'tank',
      rootPoolProperties: { autoexpand: 'on' },
      rootPoolFilesystemProperties: { acltype: 'posixacl', atime: 'off', compression: 'on', mountpoint: 'legacy', xattr: 'sa' },
      datasets: { 'tank/root': { mount: '/', properties: {} } },
      contents: [],
      configFile: null,
      postVM: '',
      includeChannel: true,
      channelSource: '/host/nixpkgs',
      memSize: 1024,
      system: { toplevel },
    });
  });

  it('replaces, not merges, a property set the user gives', () => {
    expect(valid({ rootPoolProperties: { ashift: '12' } }).rootPoolProperties).toEqual({ ashift: '12' });
  });

  it('accepts a full config', () => {
    const config = valid({
      name: 'web',
      format: 'qcow2-compressed',
      bootSize: MIN_BOOT_SIZE_MIB,
      rootSize: 64,
      rootPoolName: 'rpool',
      rootPoolProperties: { ashift: '12', 'feature@lz4_compress': 'enabled', 'org.example:role': 'web' },
      datasets: {
        'rpool/root': { mount: '/' },
        'rpool/root/nix': { mount: '/nix', properties: { 'com.sun:auto-snapshot': 'false', recordsize: '1M' } },
        'rpool/home': { mount: '/home' },
        'rpool/reserved': { properties: { refreservation: '1G', canmount: 'off' } },
      },
      contents: [{ source: 'motd', target: '/etc/motd', mode: '0644', user: 'root', group: '0' }],
      configFile: 'configuration.nix',
      postVM: 'ls "$out"',
      includeChannel: false,
      channelSource: '../nixpkgs',
      memSize: 2048,
    });
    expect(config.contents).toEqual([{ source: '/configs/motd', target: '/etc/motd', mode: '0644', user: 'root', group: '0' }]);
    expect(config.configFile).toBe('/configs/configuration.nix');
    expect(config.channelSource).toBe('/nixpkgs');
  });
});

describe('paths relative to the config folder', () => {
  it('resolves an expression and a relative flake', () => {
    expect(valid({ system: { expression: 'system.nix', attr: 'toplevel' } }).system).toEqual({
      expression: '/configs/system.nix',
      attr: 'toplevel',
    });
    expect(valid({ system: { flake: '.#demo' } }).system).toEqual({ flake: '/configs#demo' });
    expect(valid({ system: { flake: 'github:NixOS/nixpkgs#demo' } }).system).toEqual({ flake: 'github:NixOS/nixpkgs#demo' });
  });

  it('reports a missing source, configFile and expression with the resolved path', () => {
    expect(issueAt({ contents: [{ source: 'missing.txt', target: '/etc/x' }] }, 'contents[0].source').message).toContain(
      '/configs/missing.txt',
    );
    expect(issueAt({ configFile: 'missing.nix' }, 'configFile').message).toContain('/configs/missing.nix');
    expect(issueAt({ system: { expression: 'missing.nix' } }, 'system.expression').message).toContain('not found');
  });

  it('refuses a folder as configFile and a file as channelSource, before anything is built', () => {
    expect(issueAt({ configFile: 'a-folder' }, 'configFile').message).toBe('must be a file, but /configs/a-folder is a folder');
    expect(issueAt({ channelSource: 'nix.tar' }, 'channelSource').message).toBe('must be a folder, but /configs/nix.tar is a file');
    // not copied without includeChannel: then it only has to exist
    expect(valid({ includeChannel: false, channelSource: 'nix.tar' }).channelSource).toBe('/configs/nix.tar');
    // a source may be either; nix-build takes a folder holding default.nix
    expect(valid({ contents: [{ source: 'a-folder', target: '/srv' }] }).contents[0]!.source).toBe('/configs/a-folder');
    expect(valid({ system: { expression: 'a-folder' } }).system).toEqual({ expression: '/configs/a-folder' });
  });

  it('looks at the real file system by default', () => {
    const missing = parseImageConfig({ ...onThisHost, configFile: 'no-such-file.nix' }, { baseDir: '/nonexistent-dir' });
    expect(missing.ok).toBe(false);
    const folder = parseImageConfig({ ...onThisHost, configFile: '/etc' }, { baseDir: '/' });
    expect(folder.ok ? [] : folder.errors).toEqual([{ path: 'configFile', message: 'must be a file, but /etc is a folder' }]);
    const device = parseImageConfig({ ...onThisHost, includeChannel: true, channelSource: '/dev/null' }, { baseDir: '/' });
    expect(device.ok ? [] : device.errors).toEqual([{ path: 'channelSource', message: 'must be a folder, but /dev/null is neither a file nor a folder' }]);
  });
});

describe('sizes', () => {
  it.each([
    ['bootSize', -1],
    ['bootSize', '1024'],
    ['bootSize', 1.5],
    ['rootSize', -64],
    ['rootSize', 'big'],
    ['rootSize', 63],
    ['memSize', 'lots'],
    ['memSize', 0],
  ])('refuses %s = %j', (field, value) => {
    expect(issueAt({ [field]: value }, field).message).toMatch(/MiB/);
  });

  it('a value that is not an integer gets both bounds of its field', () => {
    for (const value of ['64', null, true, 1.5, 1e400]) {
      expect(issueAt({ bootSize: value }, 'bootSize').message, String(value)).toBe('must be an integer number of MiB, at least 36 and at most 2097152');
      expect(issueAt({ rootSize: value }, 'rootSize').message, String(value)).toBe('must be an integer number of MiB, at least 64 and at most 8589934592');
    }
    expect(issueAt({ memSize: 'lots' }, 'memSize').message).toBe('must be an integer number of MiB, at least 256 and at most 8589934592');
  });

  it('gives the smallest bootSize in the message', () => {
    expect(MIN_BOOT_SIZE_MIB).toBe(36);
    expect(issueAt({ bootSize: 35 }, 'bootSize').message).toContain('at least 36 MiB');
    expect(valid({ bootSize: 36 }).bootSize).toBe(36);
  });

  it('refuses sizes no disk can have: a boot disk past FAT32\'s 2 TiB, any size past 8 PiB (not exact in bytes)', () => {
    expect(valid({ bootSize: 2 * 1024 * 1024 }).bootSize).toBe(2097152);
    expect(issueAt({ bootSize: 2 * 1024 * 1024 + 1 }, 'bootSize').message).toBe("must be at most 2097152 MiB (2 TiB): FAT32 counts the ESP's 512-byte sectors in 32 bits");
    expect(valid({ rootSize: 2 ** 33 }).rootSize).toBe(2 ** 33);
    expect(issueAt({ rootSize: 2 ** 33 + 1 }, 'rootSize').message).toBe('must be at most 8589934592 MiB (8 PiB)');
    expect(issueAt({ rootSize: 9007199254740991 }, 'rootSize').message).toBe('must be at most 8589934592 MiB (8 PiB)');
  });

  it('says rootSize must be at least 64', () => {
    expect(issueAt({ rootSize: 63 }, 'rootSize').message).toContain('64');
  });
});

describe('format', () => {
  it('refuses an unknown format and lists the allowed ones', () => {
    expect(issueAt({ format: 'iso' }, 'format').message).toContain('raw, qcow2, qcow2-compressed, vdi, vpc');
  });
});

describe('rootPoolName', () => {
  it.each(['1tank', 'ta nk', 'tank/x', '', 'mirror', 'mirrored', 'raidz', 'raidz2', 'draid1', 'spare', 'spares', 'log', 'cache', 'special', 'dedup', 'c0t0d0', 'x'.repeat(240)])(
    'refuses %j',
    (name) => {
      const issue = issueAt({ rootPoolName: name, datasets: {} }, 'rootPoolName');
      expect(issue.message).toContain('starts with a letter');
    },
  );

  it.each(['rpool', 'Tank', 'my-pool.v1:a_b', 'logs', 'cachepool', 'c'])('accepts %j', (name) => {
    expect(valid({ rootPoolName: name, datasets: { [`${name}/root`]: { mount: '/' } } }).rootPoolName).toBe(name);
  });
});

describe('properties', () => {
  it.each([
    ['bad name', 'on'],
    ['bad\nname', 'on'],
    ['Compression', 'on'],
    ['a;b', 'on'],
    ['', 'on'],
  ])('refuses the property name %j', (name, value) => {
    const shown = name === '' || name.includes('\n') ? JSON.stringify(name) : name;
    const issue = issueAt({ rootPoolFilesystemProperties: { [name]: value } }, `rootPoolFilesystemProperties.${shown}`);
    expect(issue.message).toContain('property name');
  });

  it.each(['on off', 'on\n', 'a;b', '$(reboot)', '`id`', "it's", '', 'a|b'])('refuses the property value %j', (value) => {
    const issue = issueAt({ rootPoolProperties: { comment: value } }, 'rootPoolProperties.comment');
    expect(issue.message).toContain('no whitespace, quotes or shell metacharacters');
  });

  it('refuses a non-string value and checks dataset properties too', () => {
    expect(issueAt({ rootPoolProperties: { ashift: 12 } }, 'rootPoolProperties.ashift').message).toContain('must be a string');
    const datasets = { 'tank/root': { mount: '/', properties: { 'x y': 'on', quota: '1G;' } } };
    expect(issueAt({ datasets }, 'datasets.tank/root.properties.x y').message).toContain('property name');
    expect(issueAt({ datasets }, 'datasets.tank/root.properties.quota').message).toContain('property value');
  });
});

describe('datasets', () => {
  it('refuses a dataset outside the pool and the pool itself', () => {
    const datasets = { 'tank/root': { mount: '/' }, 'other/var': { mount: '/var' }, tank: {} };
    expect(issueAt({ datasets }, 'datasets.other/var').message).toContain('under the pool: "tank/<path>"');
    expect(issueAt({ datasets }, 'datasets.tank').message).toContain('<pool>/<path>');
  });

  it.each(['tank/a b', 'tank/a@snap', 'tank/a#b', 'tank//x', 'tank/x/', 'tank/..', 'tank/./x', `tank/${'x'.repeat(260)}`])(
    'refuses the dataset name %j',
    (name) => {
      expect(issueAt({ datasets: { 'tank/root': { mount: '/' }, [name]: {} } }, `datasets.${name}`).message).toContain(
        'invalid dataset name',
      );
    },
  );

  it.each(['var', '/var/', '/a/../b', '/a//b', '/a/./b', '', '/a\nb', './x'])('refuses the mount %j', (mount) => {
    const datasets = { 'tank/root': { mount: '/' }, 'tank/x': { mount } };
    expect(issueAt({ datasets }, 'datasets.tank/x.mount').message).toContain('absolute, normal path');
  });

  it('refuses a mount used twice', () => {
    const datasets = { 'tank/root': { mount: '/' }, 'tank/a': { mount: '/srv' }, 'tank/b': { mount: '/srv' } };
    expect(issueAt({ datasets }, 'datasets.tank/b.mount').message).toContain('already the mount of tank/a');
  });

  it('requires exactly one dataset at /', () => {
    expect(issueAt({ datasets: { 'tank/var': { mount: '/var' } } }, 'datasets').message).toContain('must mount "/"');
    expect(issueAt({ datasets: {} }, 'datasets').message).toContain('must mount "/"');
    const result = parse({ system: { toplevel } });
    expect(result.ok ? [] : result.errors.map((i) => i.path)).toEqual(['datasets']);
    const twice = { 'tank/a': { mount: '/' }, 'tank/b': { mount: '/' } };
    expect(issueAt({ datasets: twice }, 'datasets.tank/b.mount').message).toContain('unique');
  });

  it('refuses a dataset that is not an object', () => {
    expect(issueAt({ datasets: { 'tank/root': '/' } }, 'datasets.tank/root').message).toContain('{mount?, properties?}');
  });
});

describe('contents', () => {
  const entry = (extra: Record<string, unknown>) => ({ contents: [{ source: 'motd', target: '/etc/motd', ...extra }] });

  it.each(['/../etc/passwd', 'etc/motd', '/', '/etc/../../x', '/etc/', ''])('refuses the target %j', (target) => {
    expect(issueAt(entry({ target }), 'contents[0].target').message).toMatch(/inside the image|absolute, normal path/);
  });

  it.each(['0999', 'rw-r--r--', '64', '0o644', '12345', 644])('refuses the mode %j', (mode) => {
    expect(issueAt(entry({ mode }), 'contents[0].mode').message).toContain('octal');
  });

  it.each(['0644', '755', '1777', '0755'])('accepts the mode %j', (mode) => {
    expect(valid(entry({ mode })).contents[0]?.mode).toBe(mode);
  });

  it('refuses a bad owner, an empty source and a repeated target', () => {
    expect(issueAt(entry({ user: 'a b' }), 'contents[0].user').message).toContain('numeric id');
    expect(issueAt(entry({ source: '' }), 'contents[0].source').message).toContain('empty');
    const twice = { contents: [{ source: 'a', target: '/etc/a' }, { source: 'b', target: '/etc/a' }] };
    expect(issueAt(twice, 'contents[1].target').message).toContain('already a target');
  });

  it.each(['/etc/NIXOS', '/nix/store', '/nix/store/x-file', '/nix/var/nix/db/db.sqlite', '/nix/var/nix/profiles/system'])(
    'refuses the target %j, which install itself writes after contents',
    (target) => {
      expect(issueAt(entry({ target }), 'contents[0].target').message).toMatch(/written by install itself|Nix store or its database/);
    },
  );

  it.each(['/etc/nixos/configuration.nix', '/nix/custom', '/etc/NIXOS.d/x'])('accepts the target %j', (target) => {
    expect(valid(entry({ target })).contents[0]?.target).toBe(target);
  });

  it('refuses a target inside another entry whose source is a file, in either order, naming both', () => {
    const fileFirst = { contents: [{ source: 'motd', target: '/srv/t' }, { source: 'a-folder', target: '/srv/t/x' }] };
    expect(issueAt(fileFirst, 'contents[1].target').message).toBe(`lies inside "/srv/t", which contents[0] makes a file (from ${baseDir}/motd): it must be a folder to hold anything`);
    const fileLast = { contents: [{ source: 'other', target: '/srv/t/x/y' }, { source: 'motd', target: '/srv/t' }] };
    expect(issueAt(fileLast, 'contents[0].target').message).toContain('which contents[1] makes a file');
    // inside a folder entry, or beside a file with a common prefix: fine
    expect(valid({ contents: [{ source: 'a-folder', target: '/srv/t' }, { source: 'motd', target: '/srv/t/x' }] }).contents).toHaveLength(2);
    expect(valid({ contents: [{ source: 'motd', target: '/srv/t' }, { source: 'motd', target: '/srv/tx' }] }).contents).toHaveLength(2);
  });
});

describe('contents owners', () => {
  it('refuses a user or group name the build host does not have, since chown looks names up there', () => {
    const known = (_db: 'passwd' | 'group', name: string) => name === 'root';
    const result = parseImageConfig({ ...minimal, contents: [{ source: 'motd', target: '/etc/motd', user: 'nosuchuser', group: 'root' }] }, { baseDir, kindOf, nixPath, hasName: known });
    expect(result.ok).toBe(false);
    const errors = result.ok ? [] : result.errors;
    expect(errors).toEqual([{ path: 'contents[0].user', message: 'the build host has no user "nosuchuser" (names are looked up there; give a numeric id for one it does not have)' }]);
    // numeric ids are taken as they are
    expect(parseImageConfig({ ...minimal, contents: [{ source: 'motd', target: '/etc/motd', user: '4242', group: '4242' }] }, { baseDir, kindOf, nixPath, hasName: known }).ok).toBe(true);
  });

  it('asks the host through getent', () => {
    expect(hostHasName('passwd', 'root')).toBe(true);
    expect(hostHasName('group', 'root')).toBe(true);
    expect(hostHasName('passwd', 'no-such-user-for-zfs-image')).toBe(false);
  });
});

describe('a contents source that is a symbolic link', () => {
  it('refuses a mode for it (chmod would follow the link to the build host\'s file), and takes it without one', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'config-link-'));
    try {
      await writeFile(path.join(dir, 'host-file'), 'on the host\n');
      await symlink(path.join(dir, 'host-file'), path.join(dir, 'link'));
      const withMode = parseImageConfig({ ...onThisHost, contents: [{ source: 'link', target: '/etc/x', mode: '0777' }] }, { baseDir: dir });
      expect(withMode.ok).toBe(false);
      const issue = withMode.ok ? undefined : withMode.errors.find((i) => i.path === 'contents[0].mode');
      expect(issue?.message).toContain(`${path.join(dir, 'link')} is a symbolic link`);
      expect(parseImageConfig({ ...onThisHost, contents: [{ source: 'link', target: '/etc/x' }] }, { baseDir: dir }).ok).toBe(true);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('unknown keys', () => {
  it('refuses them at the top level and lists the allowed keys', () => {
    expect(issueAt({ bootsize: 100 }, 'bootsize').message).toContain('allowed keys: name, format, bootSize');
  });

  it('refuses them in nested objects', () => {
    expect(issueAt({ datasets: { 'tank/root': { mount: '/', mountpoint: '/' } } }, 'datasets.tank/root.mountpoint').message).toContain(
      'allowed keys: mount, properties',
    );
    expect(issueAt({ contents: [{ source: 'a', target: '/a', owner: 'root' }] }, 'contents[0].owner').message).toContain('unknown key');
    expect(issueAt({ system: { toplevel, extra: 1 } }, 'system.extra').message).toContain('unknown key');
  });
});

describe('system', () => {
  it('is required', () => {
    const result = parse({ datasets: minimal.datasets });
    expect(result.ok ? [] : result.errors).toEqual([{ path: 'system', message: expect.stringContaining('is required') }]);
  });

  it.each(['/nix/store/abc-foo', '/usr/bin', `/nix/store/${'e'.repeat(32)}-x`, `${toplevel}/bin/sh`, 'nixos'])(
    'refuses the toplevel %j',
    (path) => {
      expect(issueAt({ system: { toplevel: path } }, 'system.toplevel').message).toContain('/nix/store/<32-character hash>-<name>');
    },
  );

  it('takes exactly one kind', () => {
    expect(issueAt({ system: {} }, 'system').message).toContain('got none');
    expect(issueAt({ system: { toplevel, flake: '.#x' } }, 'system').message).toContain('got toplevel and flake');
    expect(issueAt({ system: { flake: 'nohash' } }, 'system.flake').message).toContain('<flake ref>#<configuration name>');
    expect(issueAt({ system: { flake: '.#a"b' } }, 'system.flake').message).toContain('no double quote');
    expect(valid({ system: { flake: '.#web.1' } }).system).toEqual({ flake: '/configs#web.1' });
    expect(issueAt({ system: { toplevel, attr: 'x' } }, 'system.attr').message).toContain('only with expression');
    expect(issueAt({ system: '/nix/store/x' }, 'system').message).toContain('exactly one of');
  });
});

describe('other fields', () => {
  it('refuses a postVM that is not a string', () => {
    expect(issueAt({ postVM: ['echo'] }, 'postVM').message).toContain('string of shell code');
  });

  it('refuses a non-boolean includeChannel and a bad configFile', () => {
    expect(issueAt({ includeChannel: 'yes' }, 'includeChannel').message).toContain('true or false');
    expect(issueAt({ configFile: 42 }, 'configFile').message).toContain('null or a string');
  });

  it('refuses a config that is not an object', () => {
    const result = parse([1, 2]);
    expect(result.ok ? [] : result.errors).toEqual([{ path: '', message: expect.stringContaining('JSON object') }]);
  });
});

describe('reporting', () => {
  it('reports every issue at once', () => {
    const paths = issues({ format: 'iso', bootSize: 1, configFile: 'missing.nix', extra: true }).map((i) => i.path);
    expect(paths).toEqual(expect.arrayContaining(['format', 'bootSize', 'configFile', 'extra']));
  });

  it('formats one line per issue', () => {
    const text = formatConfigIssues([
      { path: 'contents[0].mode', message: 'must be octal' },
      { path: '', message: 'must be a JSON object' },
    ]);
    expect(text).toBe('config: contents[0].mode: must be octal\nconfig: must be a JSON object');
  });
});

describe('__proto__ keys, which a parsed record would drop without a word', () => {
  // JSON.parse makes "__proto__" an own key, as a config file would
  const fromJson = (extra: string) => JSON.parse(`{"system": {"toplevel": "${toplevel}"}, ${extra}}`) as Record<string, unknown>;
  const refusedAt = (raw: Record<string, unknown>, at: string): ConfigIssue => {
    const result = parse(raw);
    if (result.ok) throw new Error('accepted');
    const found = result.errors.find((i) => i.path === at);
    if (found === undefined) throw new Error(`no issue at ${at}; got:\n${formatConfigIssues(result.errors)}`);
    return found;
  };

  it('refuses one among the datasets, with the dataset-name rule', () => {
    const raw = fromJson('"datasets": {"__proto__": {"mount": "/x"}, "tank/root": {"mount": "/"}}');
    expect(refusedAt(raw, 'datasets.__proto__').message).toBe(
      'invalid dataset name: a dataset is "<pool>/<path>" whose components are letters, digits and _ - . : (not "." or ".."), at most 255 characters in all (got "__proto__")',
    );
  });

  it('refuses one among the pool, root file system and dataset properties, with the property-name rule', () => {
    const raw = fromJson(
      '"datasets": {"tank/root": {"mount": "/", "properties": {"__proto__": "x"}}}, ' +
        '"rootPoolProperties": {"__proto__": "on"}, "rootPoolFilesystemProperties": {"__proto__": "on;rm -rf /", "mountpoint": "legacy"}',
    );
    for (const at of ['rootPoolProperties.__proto__', 'rootPoolFilesystemProperties.__proto__', 'datasets.tank/root.properties.__proto__']) {
      expect(refusedAt(raw, at).message).toMatch(/^invalid property name: a property name is a native name .* \(got "__proto__"\)$/);
    }
  });

  it('is refused as an unknown key elsewhere', () => {
    expect(refusedAt(fromJson('"datasets": {"tank/root": {"mount": "/"}}, "__proto__": {}'), '__proto__').message).toContain('unknown key');
  });
});

describe('the system on this host', () => {
  it('refuses a toplevel that does not exist, naming what to do', () => {
    const missing = `/nix/store/${'0123456789abcdfghijklmnpqrsvwxyz'}-missing-system`;
    expect(issueAt({ system: { toplevel: missing } }, 'system.toplevel').message).toBe(
      `must exist on this host, but ${missing} does not: build the system here (nix-build) or copy it into this host's store (nix copy) first, or give "flake" or "expression" instead`,
    );
  });

  it('looks with lstat on the real file system', () => {
    const result = parseImageConfig({ ...onThisHost, system: { toplevel } }, { baseDir: '/' });
    expect(result.ok ? [] : result.errors).toEqual([{ path: 'system.toplevel', message: expect.stringContaining(`${toplevel} does not`) }]);
  });

  it('takes an expression that is a file or a folder holding default.nix, and refuses a folder without one', () => {
    expect(valid({ system: { expression: 'a-folder' } }).system).toEqual({ expression: '/configs/a-folder' });
    expect(issueAt({ system: { expression: 'bare-folder' } }, 'system.expression').message).toBe(
      'must be a Nix file or a folder holding default.nix, but /configs/bare-folder is a folder without default.nix',
    );
    const device = parseImageConfig({ ...onThisHost, system: { expression: '/dev/null' } }, { baseDir: '/' });
    expect(device.ok ? [] : device.errors).toEqual([
      { path: 'system.expression', message: 'must be a Nix file or a folder holding default.nix, but /dev/null is neither a file nor a folder' },
    ]);
  });
});

describe('NIX_PATH, for includeChannel without channelSource', () => {
  it('is split as Nix splits it: a URL keeps its colons', () => {
    expect(parseNixPath('nixpkgs=https://x/y.tar.gz:foo=/a:nixpkgs=channel:nixos-unstable:/plain:b=flake:nixpkgs')).toEqual([
      'nixpkgs=https://x/y.tar.gz',
      'foo=/a',
      'nixpkgs=channel:nixos-unstable',
      '/plain',
      'b=flake:nixpkgs',
    ]);
    expect(nixpkgsInNixPath('nixpkgs=https://x/y.tar.gz:nixpkgs=/src/nixpkgs')).toEqual({ path: '/src/nixpkgs' });
    expect(nixpkgsInNixPath('foo=/a:nixpkgs=channel:nixos-unstable')).toEqual({ url: 'channel:nixos-unstable' });
    expect(nixpkgsInNixPath('foo=/a')).toBeUndefined();
  });

  it('takes the nixpkgs folder as channelSource, also after a URL entry', () => {
    expect(valid().channelSource).toBe('/host/nixpkgs');
    const result = parse(minimal, { nixPath: 'foo=https://example.org/x.tar.gz:nixpkgs=/host/nixpkgs' });
    expect(result.ok && result.value.channelSource).toBe('/host/nixpkgs');
  });

  it.each(['nixpkgs=https://x/y.tar.gz', 'nixpkgs=channel:nixos-unstable', 'foo=/a:nixpkgs=flake:nixpkgs'])(
    'says a URL is not used and what to set, for %j',
    (value) => {
      const result = parse(minimal, { nixPath: value });
      const url = value.slice(value.indexOf('nixpkgs=') + 'nixpkgs='.length);
      expect(result.ok ? [] : result.errors).toEqual([
        {
          path: 'includeChannel',
          message: `true needs a nixpkgs source to copy into the image, and NIX_PATH's nixpkgs=${url} is a URL, which is not used (the channel is copied from a folder): set channelSource to a nixpkgs checkout, put nixpkgs=PATH in NIX_PATH, or set includeChannel to false`,
        },
      ]);
    },
  );

  it('refuses a nixpkgs entry that is not a folder, and none at all', () => {
    expect(parse(minimal, { nixPath: 'nixpkgs=/missing' })).toEqual({
      ok: false,
      errors: [{ path: 'includeChannel', message: 'true takes nixpkgs from NIX_PATH, but nixpkgs=/missing is not a folder: fix NIX_PATH, set channelSource to a nixpkgs checkout, or set includeChannel to false' }],
    });
    expect(parse(minimal, { nixPath: '' })).toEqual({
      ok: false,
      errors: [{ path: 'includeChannel', message: 'true needs a nixpkgs source to copy into the image: set channelSource to a nixpkgs checkout, put nixpkgs=PATH in NIX_PATH, or set includeChannel to false' }],
    });
    // not needed without includeChannel, or with a channelSource
    expect(parse({ ...minimal, includeChannel: false }, { nixPath: '' }).ok).toBe(true);
    expect(parse({ ...minimal, channelSource: 'nixpkgs' }, { nixPath: '' }).ok).toBe(true);
  });
});

describe('numeric owner ids', () => {
  const entry = (owner: string) => ({ contents: [{ source: 'motd', target: '/etc/motd', user: owner, group: owner }] });

  it.each(['4294967295', '4294967296', '99999999999'])('refuses %j, stating the range', (id) => {
    expect(issueAt(entry(id), 'contents[0].user').message).toBe(
      `a numeric id must be from 0 to 4294967294 (ids are 32 bits, and chown refuses 4294967295) (got "${id}")`,
    );
    expect(issueAt(entry(id), 'contents[0].group').message).toContain('from 0 to 4294967294');
  });

  it('accepts the largest and states the range for a bad name', () => {
    expect(valid(entry('4294967294')).contents[0]).toMatchObject({ user: '4294967294', group: '4294967294' });
    expect(issueAt(entry('1abc'), 'contents[0].user').message).toContain('or a numeric id from 0 to 4294967294');
  });
});

describe('error texts', () => {
  it('shows an empty key, quoted', () => {
    expect(issueAt({ '': 1 }, '""').message).toContain('unknown key; allowed keys: name,');
    expect(formatConfigIssues(issues({ '': 1 }))).toMatch(/^config: "": unknown key; /);
    const property = issueAt({ rootPoolFilesystemProperties: { '': 'on' } }, 'rootPoolFilesystemProperties.""');
    expect(formatConfigIssues([property])).toMatch(/^config: rootPoolFilesystemProperties\.""\: invalid property name: .* \(got ""\)$/);
  });

  it.each([
    ['bootSize', '64', 36, 2097152],
    ['bootSize', null, 36, 2097152],
    ['bootSize', true, 36, 2097152],
    ['bootSize', 1e400, 36, 2097152], // JSON's 1e400 is Infinity
    ['rootSize', '128', 64, 2 ** 33],
    ['memSize', false, 256, 2 ** 33],
  ])('gives the bounds when %s is %j, not an integer', (field, value, min, max) => {
    expect(issueAt({ [field]: value }, field).message).toBe(`must be an integer number of MiB, at least ${min} and at most ${max}`);
  });

  it('reads cleanly for a missing contents target', () => {
    expect(issueAt({ contents: [{ source: 'motd' }] }, 'contents[0].target').message).toBe(
      'is required; must be a string: an absolute, normal path in the image (starts with "/", no "." or ".." or empty components, no trailing "/", no control characters)',
    );
    expect(issueAt({ contents: [{ source: 'motd', target: 'etc' }] }, 'contents[0].target').message).toMatch(/^must be an absolute, normal path in the image /);
  });
});

describe('property values', () => {
  const fs = (properties: Record<string, string>) => ({ rootPoolFilesystemProperties: { mountpoint: 'legacy', ...properties } });
  const dataset = (properties: Record<string, string>, mount?: string) => ({
    datasets: { 'tank/root': { mount: '/' }, 'tank/data': { ...(mount === undefined ? {} : { mount }), properties } },
  });

  it.each([
    [fs({ atime: 'maybe' }), 'rootPoolFilesystemProperties.atime', 'must be one of on, off (got "maybe")'],
    [fs({ readonly: 'yes' }), 'rootPoolFilesystemProperties.readonly', 'must be one of on, off (got "yes")'],
    [fs({ xattr: 'auto' }), 'rootPoolFilesystemProperties.xattr', 'must be one of on, off, sa, dir (got "auto")'],
    [dataset({ canmount: 'yes' }), 'datasets.tank/data.properties.canmount', 'must be one of on, off, noauto (got "yes")'],
    [dataset({ sync: 'sometimes' }), 'datasets.tank/data.properties.sync', 'must be one of standard, always, disabled (got "sometimes")'],
    [dataset({ quota: 'lots' }), 'datasets.tank/data.properties.quota', 'must be a size like "10G", "512M" or a number of bytes, or none (got "lots")'],
    [dataset({ refreservation: '1GG' }), 'datasets.tank/data.properties.refreservation', 'must be a size like "10G", "512M" or a number of bytes, or none or auto (got "1GG")'],
    [dataset({ recordsize: '3K' }), 'datasets.tank/data.properties.recordsize', 'must be a power of two from 512 to 16M, like "128K" or "1M" (got "3K")'],
    [dataset({ recordsize: '32M' }), 'datasets.tank/data.properties.recordsize', 'must be a power of two from 512 to 16M, like "128K" or "1M" (got "32M")'],
    [dataset({ recordsize: '256' }), 'datasets.tank/data.properties.recordsize', 'must be a power of two from 512 to 16M, like "128K" or "1M" (got "256")'],
    [{ rootPoolProperties: { autoexpand: 'true' } }, 'rootPoolProperties.autoexpand', 'must be one of on, off (got "true")'],
  ])('refuses %j', (extra, at, message) => {
    expect(issueAt(extra, at).message).toBe(message);
  });

  it('accepts what OpenZFS takes, and leaves other and user properties free-form', () => {
    const config = valid({
      rootPoolProperties: { autoexpand: 'off', ashift: '12' },
      ...fs({ atime: 'on', relatime: 'on', xattr: 'sa', acltype: 'posixacl', compression: 'zstd-3', 'com.example:note': 'any-thing' }),
      datasets: {
        'tank/root': { mount: '/', properties: { quota: '10G', reservation: 'none', refquota: '1.5T', recordsize: '128K', canmount: 'noauto' } },
        'tank/big': { mount: '/big', properties: { recordsize: '16M', refreservation: 'auto', sync: 'disabled', quota: '1073741824', mountpoint: 'legacy' } },
        'tank/hold': { properties: { refreservation: '2GiB', canmount: 'off', mountpoint: 'none' } },
      },
    });
    expect(config.datasets['tank/hold']?.properties).toEqual({ refreservation: '2GiB', canmount: 'off', mountpoint: 'none' });
    // a property named like an Object method is not in the table either
    expect(valid(fs({ constructor: 'x' })).rootPoolFilesystemProperties).toMatchObject({ constructor: 'x' });
  });

  it('keeps mountpoint legacy where a dataset has a mount; one without may have none or a path ZFS mounts itself', () => {
    expect(issueAt(fs({ mountpoint: 'somewhere' }), 'rootPoolFilesystemProperties.mountpoint').message).toMatch(/^must be legacy, none, or an absolute path/);
    // no mount: left to ZFS, as the seed allows
    expect(valid(dataset({ mountpoint: '/srv' })).datasets['tank/data']?.properties).toEqual({ mountpoint: '/srv' });
    // with a mount, a path is refused like none: the image's legacy mount would not mount it
    expect(issueAt(dataset({ mountpoint: '/srv' }, '/data'), 'datasets.tank/data.properties.mountpoint').message).toBe(
      "is /srv, but a dataset with a mount needs mountpoint=legacy (the image's fileSystems mount it with mount -t zfs, which refuses a dataset ZFS mounts itself)",
    );
    expect(issueAt(fs({ mountpoint: '/tank' }), 'datasets.tank/root.mount').message).toContain('inherits mountpoint=/tank from rootPoolFilesystemProperties');
    expect(issueAt(dataset({ mountpoint: 'none' }, '/data'), 'datasets.tank/data.properties.mountpoint').message).toBe(
      "is none, but a dataset with a mount needs mountpoint=legacy (the image's fileSystems mount it with mount -t zfs, which refuses none)",
    );
    // inherited from a listed parent, or from the root file system
    const parent = { datasets: { 'tank/root': { mount: '/' }, 'tank/data': { properties: { mountpoint: 'none' } }, 'tank/data/x': { mount: '/x' } } };
    expect(issueAt(parent, 'datasets.tank/data/x.mount').message).toContain('inherits mountpoint=none from datasets.tank/data');
    expect(issueAt(fs({ mountpoint: 'none' }), 'datasets.tank/root.mount').message).toContain('inherits mountpoint=none from rootPoolFilesystemProperties');
    // set nowhere: ZFS's default path, said once for the whole config
    const unset = parse({ ...minimal, rootPoolFilesystemProperties: { atime: 'off' }, datasets: { 'tank/root': { mount: '/' }, 'tank/var': { mount: '/var' } } });
    expect(unset.ok ? [] : unset.errors.map((e) => e.path)).toEqual(['rootPoolFilesystemProperties']);
    // a child that sets legacy itself is fine
    const legacyChild = { ...fs({ mountpoint: 'none' }), datasets: { 'tank/root': { mount: '/', properties: { mountpoint: 'legacy' } } } };
    expect(valid(legacyChild).datasets['tank/root']?.properties).toEqual({ mountpoint: 'legacy' });
  });
});

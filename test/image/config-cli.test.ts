// Bad input is kept out before anything is created: exit 2, the field named, no folder made, no command run.
import { execa } from 'execa';
import { mkdir, mkdtemp, readdir, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { baseConfig } from '../helpers/image.ts';
import { ROOT } from '../helpers/toy.ts';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'config-cli-'));
  await writeFile(path.join(dir, 'motd'), 'x');
  await writeFile(path.join(dir, 'configuration.nix'), '{ ... }: { }');
  await execa('mkdir', ['-p', path.join(dir, 'tree')]);
});
afterAll(() => rm(dir, { recursive: true, force: true }));

async function buildWith(text: string | Uint8Array, env: Record<string, string> = {}) {
  const file = path.join(dir, 'config.json');
  await writeFile(file, text);
  const cache = path.join(dir, 'cache');
  const out = path.join(dir, 'out');
  const result = await execa(process.execPath, ['--import', 'tsx', path.join(ROOT, 'Taskfile.ts'), 'build', '--config', file, '--cache-dir', cache, '--out', out], {
    reject: false,
    cwd: ROOT,
    env: { CI: '1', ...env },
  });
  const created = (await readdir(dir)).filter((n) => n === 'cache' || n === 'out');
  return { exitCode: result.exitCode, stderr: result.stderr, created };
}

const patched = (patch: Record<string, unknown>) => JSON.stringify({ ...baseConfig('cfgtest'), ...patch });

describe('config errors on the command line', () => {
  const cases: [string, Record<string, unknown>, RegExp][] = [
    ['negative size', { rootSize: -5 }, /config: rootSize: /],
    ['non-numeric size', { bootSize: 'big' }, /config: bootSize: /],
    ['rootSize under 64', { rootSize: 32 }, /config: rootSize: .*64/],
    ['bootSize under the FAT32 minimum', { bootSize: 20 }, /config: bootSize: must be at least 36 MiB/],
    ['unknown format', { format: 'iso' }, /config: format: must be one of raw, qcow2, qcow2-compressed, vdi, vpc \(VHD is vpc\)/],
    ['reserved pool name', { rootPoolName: 'mirror' }, /config: rootPoolName: /],
    ['unknown key', { fromat: 'raw' }, /config: fromat: /],
    ['system not a store path', { system: { toplevel: '/usr/bin' } }, /config: system.toplevel: must be a store path/],
    ['property value with shell syntax', { rootPoolProperties: { autoexpand: 'on;reboot' } }, /config: rootPoolProperties.autoexpand: /],
    ['missing configFile', { configFile: 'nope.nix' }, /config: configFile: Nix file not found/],
    ['postVM not a string', { postVM: 1 }, /config: postVM: must be a string/],
    ['a property zfs-fuse cannot set, asked for by name', { rootPoolFilesystemProperties: { compression: 'zstd', mountpoint: 'legacy' } }, /compression=zstd: .*zfs-fuse/],
    // wrong in a second way too (rootSize), so that a version without the check refuses the config and never builds
    ...([
      ['an empty key, shown quoted', { '': 1 }, /^error: config: "": unknown key; allowed keys: /m],
      ['root file system properties without a mountpoint', { rootPoolFilesystemProperties: { compression: 'on' } }, /^error: config: rootPoolFilesystemProperties: has no mountpoint, so datasets get ZFS's default/m],
      ['a property value outside the property\'s set', { rootPoolFilesystemProperties: { atime: 'maybe', mountpoint: 'legacy' } }, /config: rootPoolFilesystemProperties\.atime: must be one of on, off \(got "maybe"\)/],
      ['a numeric owner id above the range', { contents: [{ source: 'motd', target: '/etc/motd', user: '4294967296' }] }, /config: contents\[0\]\.user: a numeric id must be from 0 to 4294967294/],
      ['an expression folder without default.nix', { system: { expression: 'tree' } }, /config: system\.expression: must be a Nix file or a folder holding default\.nix, but .*\/tree is a folder without default\.nix/],
      ['a toplevel that is not on this host', { system: { toplevel: `/nix/store/${'0'.repeat(32)}-not-here` } }, /config: system\.toplevel: must exist on this host, but \/nix\/store\/0{32}-not-here does not/],
    ] as const).map(([name, patch, message]): [string, Record<string, unknown>, RegExp] => [name, { ...patch, rootSize: -5 }, message]),
  ];
  for (const [name, patch, message] of cases) {
    it(`refuses ${name}`, async () => {
      const result = await buildWith(patched(patch));
      expect(result.exitCode).toBe(2);
      expect(result.stderr).toMatch(message);
      expect(result.created).toEqual([]);
    });
  }

  it('shows what the ZFS driver refuses only once the rest of the config is valid', async () => {
    const zstd = { rootPoolFilesystemProperties: { compression: 'zstd', mountpoint: 'legacy' } };
    const both = await buildWith(patched({ ...zstd, rootSize: -5 }));
    expect(both.exitCode).toBe(2);
    expect(both.stderr).toMatch(/^error: config: rootSize: /m);
    expect(both.stderr).not.toMatch(/zstd/);
    const driverOnly = await buildWith(patched(zstd));
    expect(driverOnly.exitCode).toBe(2);
    expect(driverOnly.stderr).toMatch(/compression=zstd: .*zfs-fuse/);
    expect(driverOnly.created).toEqual([]);
  });

  it('lets plan and logs look at a config whose toplevel is gone from the store (nix-collect-garbage), while build refuses it', async () => {
    const file = path.join(dir, 'gone.json');
    const gone = `/nix/store/${'0'.repeat(32)}-collected`;
    await writeFile(file, patched({ system: { toplevel: gone } }));
    const look = (...args: string[]) =>
      execa(process.execPath, ['--import', 'tsx', path.join(ROOT, 'Taskfile.ts'), ...args, '--config', file, '--cache-dir', path.join(dir, 'cache'), '--out', path.join(dir, 'out')], {
        reject: false,
        cwd: ROOT,
        env: { CI: '1' },
      });
    const plan = await look('plan');
    expect(plan.exitCode, plan.stderr).toBe(0);
    expect(plan.stdout).toMatch(/^system\s+run\s+never built$/m);
    const logs = await look('logs', 'install');
    expect(logs.exitCode).toBe(1); // no log yet: the answer, not a config error
    expect(logs.stderr).toMatch(/^install: no log yet/m);
    const build = await look('build');
    expect(build.exitCode).toBe(2);
    expect(build.stderr).toMatch(/config: system\.toplevel: must exist on this host/);
    expect((await readdir(dir)).filter((n) => n === 'cache' || n === 'out')).toEqual([]);
  });

  it('refuses a zfs command time limit that is not a number of seconds', async () => {
    const result = await buildWith(patched({}), { ZFS_IMAGE_ZFS_TIMEOUT: '2m' });
    expect(result.exitCode).toBe(2);
    expect(result.stderr).toContain('error: ZFS_IMAGE_ZFS_TIMEOUT: must be a number of seconds from 0 (no limit) to 2147483, not "2m"');
    expect(result.created).toEqual([]);
  });

  it('refuses an unknown ZFS_DRIVER, while --help still works with it set', async () => {
    const result = await buildWith(patched({}), { ZFS_DRIVER: 'bogus' });
    expect(result.exitCode).toBe(2);
    expect(result.stderr).toContain('error: ZFS_DRIVER: must be one of auto, openzfs, zfs-fuse, not "bogus"');
    expect(result.stderr).not.toMatch(/\n\s+at /); // a message, not a stack trace
    expect(result.created).toEqual([]);
    const help = await execa(process.execPath, ['--import', 'tsx', path.join(ROOT, 'Taskfile.ts'), '--help'], { reject: false, cwd: ROOT, env: { ZFS_DRIVER: 'bogus' } });
    expect(help.exitCode, help.stderr).toBe(0);
    expect(help.stdout).toMatch(/^Usage: /);
  });

  it('the cache commands ignore a broken config and a bad ZFS_DRIVER; doctor reads neither and says what is missing', async () => {
    const file = path.join(dir, 'broken.json');
    await writeFile(file, '{ "format": raw');
    const cache = path.join(dir, 'maint-cache');
    await mkdir(cache);
    const run = (args: string[], env: Record<string, string> = {}) =>
      execa(process.execPath, ['--import', 'tsx', path.join(ROOT, 'Taskfile.ts'), ...args, '--config', file, '--cache-dir', cache], {
        reject: false,
        cwd: ROOT,
        env: { CI: '1', ZFS_DRIVER: 'bogus', ...env },
      });
    try {
      for (const command of ['gc', 'verify', 'clean']) {
        const result = await run([command]);
        expect(result.exitCode, `${command}: ${result.stderr}`).toBe(0);
        expect(result.stderr, command).not.toMatch(/config|ZFS_DRIVER/);
      }
      const doctor = await run(['doctor']);
      expect(doctor.exitCode, doctor.stderr).toBe(0);
      // a tool missing from PATH: exit 1, naming it (node itself is found by its absolute path)
      const missing = await execa(process.execPath, ['--import', 'tsx', path.join(ROOT, 'Taskfile.ts'), 'doctor'], {
        reject: false,
        cwd: ROOT,
        env: { CI: '1', PATH: '/nonexistent' },
        extendEnv: false,
      });
      expect(missing.exitCode).toBe(1);
      expect(missing.stdout).toMatch(/^MISSING\s+qemu-img/m);
    } finally {
      await rm(cache, { recursive: true, force: true });
    }
  });

  it('every command that loads the graph refuses an unknown ZFS_DRIVER with exit 2, creating nothing', async () => {
    const file = path.join(dir, 'config.json');
    await writeFile(file, patched({}));
    const cache = path.join(dir, 'driver-cache');
    for (const args of [['plan'], ['run', 'system'], ['explain', 'install'], ['graph'], ['logs', 'install'], ['shell', 'install', '--', 'true']]) {
      const result = await execa(process.execPath, ['--import', 'tsx', path.join(ROOT, 'Taskfile.ts'), ...args, '--config', file, '--cache-dir', cache], {
        reject: false,
        cwd: ROOT,
        env: { CI: '1', ZFS_DRIVER: 'bogus' },
      });
      expect(result.exitCode, `${args[0]}: ${result.stderr}`).toBe(2);
      expect(result.stderr, args[0]).toContain('error: ZFS_DRIVER: must be one of auto, openzfs, zfs-fuse, not "bogus"');
    }
    expect((await readdir(dir)).filter((name) => name === 'driver-cache')).toEqual([]);
  });

  it('names the file, line and column of malformed JSON', async () => {
    const result = await buildWith('{\n  "name": "x",\n  "format": raw\n}\n');
    expect(result.exitCode).toBe(2);
    expect(result.stderr).toMatch(/config\.json: invalid JSON at line 3, column 13/);
    expect(result.created).toEqual([]);
  });

  it('refuses a field given twice in one object, which JSON.parse would silently drop', async () => {
    const result = await buildWith('{"name": "a", "format": "raw", "name": "b"}\n');
    expect(result.exitCode).toBe(2);
    expect(result.stderr).toBe('error: config: name: given more than once in the same object (JSON would keep only the last; remove or merge the others)');
    expect(result.created).toEqual([]);
    // an empty key is shown quoted, as everywhere else
    const empty = await buildWith('{"name": "a", "": 1, "": 2}\n');
    expect(empty.exitCode).toBe(2);
    expect(empty.stderr).toBe('error: config: "": given more than once in the same object (JSON would keep only the last; remove or merge the others)');
  });

  it('refuses a config file that holds null, instead of building the demo', async () => {
    const result = await buildWith('null\n');
    expect(result.exitCode).toBe(2);
    expect(result.stderr).toBe('error: config: must be a JSON object');
    expect(result.created).toEqual([]);
  });

  it('reads a config file that starts with a byte-order mark', async () => {
    const result = await buildWith(`\uFEFF${patched({ rootSize: -5 })}`);
    expect(result.exitCode).toBe(2);
    expect(result.stderr).toMatch(/^error: config: rootSize: /); // parsed: the field is what is wrong
    expect(result.created).toEqual([]);
  });

  // Each of these is wrong in a second way (rootSize) that any version refuses, so that a version without the check exits 2 too and never builds.
  it('refuses a config file that is not UTF-8, naming the first bad byte, instead of reading it as U+FFFD', async () => {
    const [before, after] = patched({ name: 'NAME', rootSize: -5 }).split('NAME');
    const result = await buildWith(Buffer.concat([Buffer.from(`${before}caf`), Buffer.from([0xe9]), Buffer.from(after!)]));
    expect(result.exitCode).toBe(2);
    const offset = Buffer.byteLength(`${before}caf`);
    expect(result.stderr).toBe(`error: --config ${path.join(dir, 'config.json')}: is not UTF-8 (first bad byte 0xE9 at line 1, column ${offset + 1}, byte offset ${offset}): save the file as UTF-8`);
    expect(result.created).toEqual([]);
  });

  it('refuses a UTF-16 config file, saying it must be UTF-8', async () => {
    for (const [bom, encode] of [['FF FE', (t: string) => Buffer.from(t, 'utf16le')], ['FE FF', (t: string) => Buffer.from(t, 'utf16le').swap16()]] as const) {
      const result = await buildWith(encode(`\uFEFF${patched({ rootSize: -5 })}`));
      expect(result.exitCode).toBe(2);
      const mark = bom.split(' ').map((b) => `0x${b}`).join(' ');
      expect(result.stderr).toBe(`error: --config ${path.join(dir, 'config.json')}: is UTF-16 (it starts with the byte-order mark ${mark}), but a config must be UTF-8: save it as UTF-8`);
      expect(result.created).toEqual([]);
    }
  });

  it('refuses a "__proto__" dataset, which would otherwise vanish', async () => {
    const text = patched({ rootSize: -5 }).replace('"datasets":{', '"datasets":{"__proto__":{"mount":"/x"},');
    const result = await buildWith(text);
    expect(result.exitCode).toBe(2);
    expect(result.stderr).toContain('error: config: datasets.__proto__: invalid dataset name: a dataset is "<pool>/<path>"');
    expect(result.created).toEqual([]);
  });

  it.each(['nixpkgs=https://x/y.tar.gz', 'nixpkgs=channel:nixos-unstable'])('refuses includeChannel when NIX_PATH is %s: a URL is not used', async (nixPath) => {
    const result = await buildWith(patched({ includeChannel: true, rootSize: -5 }), { NIX_PATH: nixPath });
    expect(result.exitCode).toBe(2);
    expect(result.stderr).toContain(`error: config: includeChannel: true needs a nixpkgs source to copy into the image, and NIX_PATH's ${nixPath} is a URL, which is not used`);
    expect(result.stderr).not.toContain('is not a folder');
    expect(result.created).toEqual([]);
  });

  it('refuses includeChannel when NIX_PATH names a nixpkgs folder that is not there', async () => {
    const result = await buildWith(patched({ includeChannel: true }), { NIX_PATH: `nixpkgs=${dir}/no-such-nixpkgs` });
    expect(result.exitCode).toBe(2);
    expect(result.stderr).toContain(`error: config: includeChannel: true takes nixpkgs from NIX_PATH, but nixpkgs=${dir}/no-such-nixpkgs is not a folder`);
    expect(result.created).toEqual([]);
  });

  it('refuses includeChannel without a nixpkgs source', async () => {
    // an empty NIX_PATH: the host's own must not supply one
    const result = await buildWith(patched({ includeChannel: true }), { NIX_PATH: '' });
    expect(result.exitCode).toBe(2);
    expect(result.stderr).toMatch(/includeChannel: true needs a nixpkgs source/);
    expect(result.created).toEqual([]);
  });
});

describe('folders on the command line', () => {
  const cli = (...args: string[]) =>
    execa(process.execPath, [path.join(ROOT, 'bin/zfs-image.js'), ...args], { reject: false, cwd: dir, env: { CI: '1' } });

  it('refuses a file given as --cache-dir or --out, creating nothing', async () => {
    await writeFile(path.join(dir, 'a-file'), '');
    const cache = await cli('build', '--cache-dir', 'a-file', '--out', 'out');
    expect(cache.exitCode).toBe(2);
    expect(cache.stderr).toBe('error: --cache-dir a-file: exists and is not a folder (give a folder, or a path that does not exist yet)');
    const out = await cli('build', '--cache-dir', 'cache', '--out', 'a-file');
    expect(out.exitCode).toBe(2);
    expect(out.stderr).toMatch(/^error: --out a-file: exists and is not a folder/);
    expect((await readdir(dir)).filter((n) => n === 'cache' || n === 'out')).toEqual([]);
    // only build and run write --out: a ./result that is nix-build's link to a file does not matter to the others
    expect((await cli('gc', '--cache-dir', 'no-cache', '--out', 'a-file')).exitCode).toBe(0);
  });

  it('refuses an output folder inside the cache folder (clean and gc would delete the images) or in the Nix store, creating nothing', async () => {
    // an unknown task name: should the check ever miss, the command stops (exit 2) before writing anywhere
    for (const out of ['k', 'k/sub', 'k/artifacts']) {
      const result = await cli('build', 'no-such-task', '--cache-dir', 'k', '--out', out);
      expect(result.exitCode).toBe(2);
      expect(result.stderr).toBe(`error: --out ${out}: lies inside --cache-dir k, where \`clean\` and \`gc\` would delete the images (give a folder outside the cache)`);
    }
    // through a link too: the resolved paths are compared
    await symlink(path.join(dir, 'k'), path.join(dir, 'k-link'));
    const dangling = await cli('build', 'no-such-task', '--cache-dir', 'k-link', '--out', 'elsewhere');
    expect(dangling.exitCode).toBe(2);
    expect(dangling.stderr).toBe(`error: --cache-dir k-link: is a link to ${path.join(dir, 'k')}, which does not exist (create that folder, or give another)`);
    await mkdir(path.join(dir, 'k'));
    const linked = await cli('run', 'no-such-task', '--cache-dir', 'k-link', '--out', 'k/o');
    expect(linked.exitCode).toBe(2);
    expect(linked.stderr).toMatch(/^error: --out k\/o: lies inside --cache-dir k-link/);
    await symlink('/nix/store', path.join(dir, 'store-result'));
    const store = await cli('build', 'no-such-task', '--cache-dir', 'k', '--out', 'store-result');
    expect(store.exitCode).toBe(2);
    expect(store.stderr).toMatch(/^error: --out store-result: leads into the Nix store \(\/nix\/store\)/);
    expect(await readdir(path.join(dir, 'k'))).toEqual([]);
    expect((await readdir(dir)).filter((n) => n === 'elsewhere')).toEqual([]);
  });

  it('refuses a cache or output folder on a read-only file system by name, before anything is created', async () => {
    const readOnly = path.join(dir, 'ro');
    await mkdir(readOnly);
    await execa('mount', ['-t', 'tmpfs', '-o', 'ro,size=1m', 'tmpfs', readOnly]);
    try {
      const cache = await cli('build', '--cache-dir', 'ro/cache', '--out', 'out');
      expect(cache.exitCode).toBe(2);
      expect(cache.stderr).toBe(`error: --cache-dir ro/cache: ${readOnly} cannot be written (read-only file system)`);
      expect((await cli('gc', '--cache-dir', 'ro')).stderr).toBe(`error: --cache-dir ro: ${readOnly} cannot be written (read-only file system)`);
      const out = await cli('build', '--cache-dir', 'cache', '--out', 'ro/out');
      expect(out.exitCode).toBe(2);
      expect(out.stderr).toMatch(/^error: --out ro\/out: .* cannot be written \(read-only file system\)/);
      expect((await readdir(dir)).filter((n) => n === 'cache' || n === 'out')).toEqual([]);
      // reading commands still work on it
      expect((await cli('plan', '--cache-dir', 'ro')).exitCode).toBe(0);
    } finally {
      await execa('umount', [readOnly]);
    }
  });

  it('explain on an empty cache says a stage inside the mount transaction was never built, and creates nothing', async () => {
    const result = await cli('explain', 'install', '--cache-dir', 'empty-cache');
    expect(result.exitCode).toBe(0);
    // the stage install: its task install and install:esp
    expect(result.stdout).toBe(
      [
        `install: dependency create-pool will run; never built in ${path.join(dir, 'empty-cache')}`,
        `install:esp: dependency partition will run; never built in ${path.join(dir, 'empty-cache')}`,
      ].join('\n'),
    );
    // the mount publishes nothing, so it is never said to be unbuilt
    expect((await cli('explain', 'mount', '--cache-dir', 'empty-cache')).stdout).not.toContain('never built');
    expect(await readdir(dir)).not.toContain('empty-cache');
  });

  it('clean, gc and verify on a cache folder that is not there say so and create none', async () => {
    for (const command of ['clean', 'gc', 'verify']) {
      const result = await cli(command, '--cache-dir', 'no-such-cache');
      expect(result.exitCode).toBe(0);
      expect(result.stdout).toBe(`${command}: no cache folder at ${path.join(dir, 'no-such-cache')}; nothing to do`);
    }
    expect(await readdir(dir)).not.toContain('no-such-cache');
  });
});

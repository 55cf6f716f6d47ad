// bin/zfs-image.js runs a Taskfile from an esbuild bundle; these check it never runs stale code.
import { execa } from 'execa';
import { copyFile, mkdtemp, readdir, readFile, rm, stat, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ROOT } from '../helpers/toy.ts';

const LAUNCHER = path.join(ROOT, 'bin/taskfile-bundle.js');

let dir: string;
let entry: string;
let cacheDir: string;
beforeEach(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'launcher-'));
  entry = path.join(dir, 'Taskfile.ts');
  cacheDir = path.join(dir, 'cache');
  // type annotations and a .ts import: plain Node could not run this without the bundle or tsx
  await writeFile(entry, [
    "import { greeting } from './greeting.ts';",
    'const folder: string = import.meta.dirname;',
    "console.log(`${greeting} from ${folder} with ${process.argv.slice(2).join(' ')}`);",
  ].join('\n'));
  await writeFile(path.join(dir, 'greeting.ts'), "export const greeting: string = 'hello';\n");
  // as in the project: .ts files are ES modules
  await writeFile(path.join(dir, 'package.json'), '{ "type": "module" }\n');
  await writeFile(path.join(dir, 'run.mjs'), `import { importTaskfile } from ${JSON.stringify(LAUNCHER)};\nawait importTaskfile(process.env.ENTRY, process.env.CACHE_DIR);\n`);
});
afterEach(() => rm(dir, { recursive: true, force: true }));

const launch = (env: Record<string, string> = {}) =>
  execa(process.execPath, [path.join(dir, 'run.mjs'), 'build', '--json'], { reject: false, env: { ENTRY: entry, CACHE_DIR: cacheDir, ...env } });
const bundles = async (): Promise<string[]> => (await readdir(cacheDir)).filter((name) => name.endsWith('.mjs'));

describe('the bundled Taskfile launcher', () => {
  it('builds the bundle once and runs it again without rebuilding', async () => {
    const first = await launch();
    expect(first.exitCode, first.stderr).toBe(0);
    // import.meta.dirname still names the source folder, not the cache folder
    expect(first.stdout).toBe(`hello from ${dir} with build --json`);
    const [built] = await bundles();
    expect(built).toBeDefined();
    const stamped = (await stat(path.join(cacheDir, 'Taskfile.stamp.json'))).mtimeMs;
    const second = await launch();
    expect(second.stdout).toBe(first.stdout);
    expect(await bundles()).toEqual([built]);
    expect((await stat(path.join(cacheDir, 'Taskfile.stamp.json'))).mtimeMs).toBe(stamped);
  });

  it('rebuilds when an imported source changes, even to the same size, and drops the old bundle', async () => {
    await launch();
    const [old] = await bundles();
    const past = new Date(Date.now() - 120_000); // built two minutes ago
    await utimes(path.join(cacheDir, old!), past, past);
    await writeFile(path.join(dir, 'greeting.ts'), "export const greeting: string = 'salut';\n");
    const edited = await launch();
    expect(edited.stdout).toBe(`salut from ${dir} with build --json`);
    const now = await bundles();
    expect(now).toHaveLength(1);
    expect(now[0]).not.toBe(old);
    const stamp = JSON.parse(await readFile(path.join(cacheDir, 'Taskfile.stamp.json'), 'utf8')) as { inputs: [string][] };
    expect(stamp.inputs.map(([file]) => file)).toEqual(expect.arrayContaining([entry, path.join(dir, 'greeting.ts')]));
  });

  it('keeps a bundle built moments ago, which a command started at the same time may be about to import', async () => {
    await launch();
    const [own] = await bundles();
    const other = 'Taskfile.4242.1.mjs'; // another command's, just written
    await copyFile(path.join(cacheDir, own!), path.join(cacheDir, other));
    await writeFile(path.join(dir, 'greeting.ts'), "export const greeting: string = 'hi';\n");
    expect((await launch()).stdout).toBe(`hi from ${dir} with build --json`);
    expect(await bundles()).toContain(other);
  });

  it('ZFS_IMAGE_SOURCES=1 runs the sources through tsx and builds no bundle', async () => {
    const result = await launch({ ZFS_IMAGE_SOURCES: '1' });
    expect(result.stdout).toBe(`hello from ${dir} with build --json`);
    await expect(stat(cacheDir)).rejects.toThrow();
  });

  it('falls back to tsx, and says so, when the bundle cannot be written', async () => {
    // the cache folder's parent is a file: mkdir fails
    cacheDir = path.join(entry, 'cache');
    const result = await launch();
    expect(result.exitCode, result.stderr).toBe(0);
    expect(result.stdout).toBe(`hello from ${dir} with build --json`);
    expect(result.stderr).toMatch(/^note: running Taskfile\.ts through tsx \(no bundle: /);
  });
});

// The same sources on Deno 2: the demo's plan, and a small graph built, interrupted and shared with Node.
// (A full image build on Deno is the README's `deno run -A Taskfile.ts build`; it is not repeated here.)
import { execa } from 'execa';
import { randomBytes } from 'node:crypto';
import { chmod, chown, mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { hashFileContent } from '../../lib/caching/file-hash.ts';
import { ROOT, toyProject, type ToyProject } from '../helpers/toy.ts';
import { running, until } from '../helpers/wait.ts';

const DENO = path.join(ROOT, 'node_modules/.bin/deno');
const deno = (args: string[]) => execa(DENO, ['run', '-A', ...args], { cwd: ROOT, reject: false, env: { CI: '1' } });

let toy: ToyProject;
beforeEach(async () => {
  toy = await toyProject();
});
afterEach(async () => {
  await toy.cleanup();
});

describe('Deno', () => {
  it('without -A says which permissions are missing and exits 2, without a stack trace or a prompt', async () => {
    // no flags at all: a package reads the environment as it loads, which crashed before the check existed
    const result = await execa(DENO, ['run', 'Taskfile.ts', '--help'], { cwd: ROOT, reject: false, stdin: 'ignore' });
    expect(result.exitCode).toBe(2);
    expect(result.stderr).toContain('error: Deno needs these permissions: --allow-env --allow-read --allow-write --allow-run --allow-sys; run it with -A');
    expect(result.stderr).not.toMatch(/Uncaught|\bat /);
  });

  it('plans the demo image without writing anything', async () => {
    const cache = await mkdtemp(path.join(tmpdir(), 'deno-plan-'));
    try {
      const result = await deno(['Taskfile.ts', 'plan', '--cache-dir', cache]);
      expect(result.exitCode, result.stderr).toBe(0);
      expect(result.stdout).toMatch(/^create-pool\s+run\s+/m);
      expect(result.stdout).toMatch(/12 of 12 task\(s\) would run/);
      expect(await readdir(cache)).toEqual([]);
    } finally {
      await rm(cache, { recursive: true, force: true });
    }
  });

  it('judges whether the output and cache folders can be written as Node does (root writes a folder it does not own; a read-only mount refuses)', async () => {
    const scratch = await mkdtemp(path.join(tmpdir(), 'deno-folders-'));
    const readOnly = path.join(scratch, 'ro');
    try {
      // owned by nobody, mode 0755: root may write it, though the mode bits alone say no
      const foreign = path.join(scratch, 'foreign');
      await mkdir(foreign);
      await chown(foreign, 65534, 65534);
      await chmod(foreign, 0o755);
      // an unknown task stops the command right after the folder checks, before anything is written
      const allowed = await deno(['Taskfile.ts', 'build', 'no-such-task', '--out', path.join(foreign, 'out'), '--cache-dir', path.join(foreign, 'cache')]);
      expect(allowed.exitCode).toBe(2);
      expect(allowed.stderr).toMatch(/unknown task or stage "no-such-task"/);
      await mkdir(readOnly);
      await execa('mount', ['-t', 'tmpfs', '-o', 'ro,size=1m', 'tmpfs', readOnly]);
      const refused = await deno(['Taskfile.ts', 'build', 'no-such-task', '--out', path.join(readOnly, 'out'), '--cache-dir', path.join(foreign, 'cache')]);
      expect(refused.exitCode).toBe(2);
      expect(refused.stderr).toContain(`${readOnly} cannot be written (read-only file system)`);
      expect(await readdir(foreign)).toEqual([]);
    } finally {
      await execa('umount', [readOnly], { reject: false });
      await rm(scratch, { recursive: true, force: true });
    }
  });

  it('hashes files, stops a command past its time limit and reads the mount table as Node does', async () => {
    const file = path.join(toy.dir, 'data.bin');
    await writeFile(file, randomBytes(3 * 1024 * 1024 + 11));
    // Deno hands out names that are not UTF-8 with their bad bytes replaced: such a folder must
    // never get a hash that stays the same while a file in it changes
    const oddNames = path.join(toy.dir, 'odd-names');
    await mkdir(oddNames);
    await writeFile(Buffer.concat([Buffer.from(`${oddNames}/`), Buffer.from([0x6e, 0xe9])]), 'latin-1 name');
    await writeFile(path.join(oddNames, 'plain.txt'), 'first');
    const result = await deno(['test/fixtures/runtime-check.ts', file, oddNames]);
    expect(result.exitCode, result.stderr).toBe(0);
    const report = JSON.parse(result.stdout) as { oddNames: { before: string; after: string } };
    expect(report).toMatchObject({ sha256: await hashFileContent(file), timedOutAfterMs: 300, root: true });
    expect(report.oddNames.before).not.toBe('missing');
    expect(report.oddNames.after).not.toBe(report.oddNames.before);
  });

  it('stops on Ctrl-C as on Node: the command and its background child killed, nothing published, exit 1', async () => {
    await toy.configure({ hang: 'c' });
    const config = ['--config', path.join(toy.dir, 'config.json'), '--cache-dir', toy.cache];
    // deno itself, not a wrapper, so the signal reaches the runner
    const run = execa(DENO, ['run', '-A', 'test/fixtures/toy-taskfile.ts', 'build', 'c', ...config], { cwd: ROOT, reject: false, env: { CI: '1' } });
    try {
      await until(async () => (await readFile(path.join(toy.markers, 'grandchild.pid'), 'utf8').catch(() => '')).trim().length > 0, 'the grandchild pid', 60_000);
      const grandchild = Number(await readFile(path.join(toy.markers, 'grandchild.pid'), 'utf8'));
      run.kill('SIGINT');
      const result = await run;
      expect(result.exitCode, result.stderr).toBe(1);
      expect(result.stderr).toContain('SIGINT: stopping running tasks, cleaning up');
      await until(async () => !(await running(grandchild)), 'the grandchild to end', 5_000);
      expect(await readdir(path.join(toy.cache, 'artifacts')).catch(() => [])).toEqual([]);
      expect(await readdir(path.join(toy.cache, 'staging')).catch(() => [])).toEqual([]);
    } finally {
      run.kill('SIGKILL');
      await run.catch(() => undefined);
    }
  });

  it('builds a small graph that Node then finds all cached, and the reverse, input files and tools included', async () => {
    const input = path.join(toy.dir, 'input.txt');
    await writeFile(input, 'one');
    await toy.configure({ inputFile: input, tools: true });
    const config = ['--config', path.join(toy.dir, 'config.json'), '--cache-dir', toy.cache];
    const built = await deno(['test/fixtures/toy-taskfile.ts', 'build', ...config]);
    expect(built.exitCode, built.stderr).toBe(0);
    expect((await toy.runs()).sort()).toEqual(['a', 'b', 'c', 'd']);
    const again = await toy.run('build');
    expect(again.stdout).toMatch(/0 ran, 4 cached/);
    // Node builds after a change; Deno finds that fresh
    await writeFile(input, 'two');
    expect((await toy.run('build')).stdout).toMatch(/3 ran, 1 cached/);
    const onDeno = await deno(['test/fixtures/toy-taskfile.ts', 'build', ...config]);
    expect(onDeno.exitCode, onDeno.stderr).toBe(0);
    expect(onDeno.stdout).toMatch(/0 ran, 4 cached/);
  });
});

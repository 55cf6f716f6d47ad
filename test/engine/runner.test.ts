import { execa } from 'execa';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { lstat, mkdir, mkdtemp, readdir, readFile, readlink, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { toyProject, type ToyProject } from '../helpers/toy.ts';
import { deadPid, running, until } from '../helpers/wait.ts';

let toy: ToyProject;
beforeEach(async () => {
  toy = await toyProject();
});
afterEach(async () => {
  await toy.cleanup();
});

/** Every file under a folder with its size, mtime and content hash. */
async function snapshot(root: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  const walk = async (dir: string): Promise<void> => {
    for (const name of await readdir(dir).catch(() => [] as string[])) {
      const file = path.join(dir, name);
      const info = await lstat(file);
      if (info.isDirectory()) {
        out[file] = `dir ${info.mtimeMs}`;
        await walk(file);
      } else {
        out[file] = `${info.size} ${info.mtimeMs} ${createHash('sha256').update(await readFile(file)).digest('hex')}`;
      }
    }
  };
  await walk(root);
  return out;
}

const lines = (text: string): string[] => text.split('\n');

describe('build, cache and resume', () => {
  it('runs every task once, then nothing on a rerun', async () => {
    const first = await toy.run('build');
    expect(first.exitCode).toBe(0);
    expect((await toy.runs()).sort()).toEqual(['a', 'b', 'c', 'd']);
    const second = await toy.run('build');
    expect(second.exitCode).toBe(0);
    expect(await toy.runs()).toHaveLength(4);
    expect(second.stdout).toMatch(/0 ran, 4 cached/);
  });

  it('resumes after a failing task is fixed without rerunning upstream', async () => {
    await toy.configure({ fail: 'b' });
    const failed = await toy.run('build');
    expect(failed.exitCode).toBe(1);
    expect(failed.stdout).toMatch(/b: failed .*exit status 1/);
    expect(failed.stdout).toContain('| b broke'); // the log's last lines
    expect(failed.stdout).toMatch(/d: skipped \(dependency b failed\)/);
    // the log gives each command's status, the failing one's too
    const log = (await toy.run('logs', 'b')).stdout;
    expect(log).toMatch(/^# exit 0 after \d+ ms$/m);
    expect(log).toMatch(/^# exit 1 after \d+ ms$/m);
    await toy.configure({});
    const fixed = await toy.run('build');
    expect(fixed.exitCode).toBe(0);
    const counts = (await toy.runs()).reduce<Record<string, number>>((m, id) => ({ ...m, [id]: (m[id] ?? 0) + 1 }), {});
    expect(counts).toEqual({ a: 1, b: 2, c: 1, d: 1 });
  });

  it('a task that ends without writing an artifact it declares fails with missing-artifact, and nothing is published', async () => {
    await toy.configure({ noOutput: 'a' });
    const result = await toy.run('build', 'b', '--json');
    expect(result.exitCode).toBe(1);
    const events = result.stdout.trim().split('\n').map((line) => JSON.parse(line) as { type: string; id?: string; status?: string; reason?: string; failure?: { reason: string; artifact?: string; message?: string } });
    const a = events.find((e) => e.type === 'task' && e.id === 'a' && e.status === 'failed');
    expect(a?.failure).toEqual({ reason: 'missing-artifact', artifact: 'out.txt', message: 'a did not write file "out.txt"' });
    expect(events.find((e) => e.type === 'task' && e.id === 'b' && e.status !== 'started')).toMatchObject({ status: 'skipped', reason: 'dependency a failed' });
    expect(await readdir(path.join(toy.cache, 'artifacts')).catch(() => [])).toEqual([]);
    await toy.configure({});
    expect((await toy.run('build', 'b')).stdout).toMatch(/2 ran, 0 cached/);
  });

  it('logs a disk copy as a command, and a failed one with cp\'s own message and status', async () => {
    await toy.configure({ diskMiB: 64 });
    expect((await toy.run('build', 'disk-copy')).exitCode).toBe(0);
    expect((await toy.run('logs', 'disk-copy')).stdout).toMatch(/^\$ cp --reflink=auto --sparse=always -- \S+disk\.raw \S+disk\.raw\n# exit 0 after \d+ ms$/m);
    await toy.configure({ diskMiB: 64, copyFolder: true });
    expect((await toy.run('build', 'disk-copy')).exitCode).toBe(1);
    const log = (await toy.run('logs', 'disk-copy')).stdout;
    expect(log).toMatch(/^cp: -r not specified; omitting directory '\S+'\n# exit 1 after \d+ ms$/m);
  });

  it('run --force reruns one fresh task and nothing else', async () => {
    await toy.run('build');
    const forced = await toy.run('run', 'b', '--force');
    expect(forced.exitCode).toBe(0);
    expect(forced.stdout).toMatch(/b: ran .*\(forced\)/);
    expect((await toy.runs()).filter((id) => id === 'b')).toHaveLength(2);
    expect(await toy.runs()).toHaveLength(5);
    const unforced = await toy.run('run', 'b');
    expect(unforced.stdout).toMatch(/b: cached/);
  });

  it('plan leaves the cache folder byte-identical and says why', async () => {
    await toy.run('build');
    await toy.configure({ text: 'changed' });
    const before = await snapshot(toy.cache);
    const planned = await toy.run('plan');
    expect(planned.exitCode).toBe(0);
    expect(lines(planned.stdout)).toEqual(
      expect.arrayContaining([expect.stringMatching(/^a\s+run\s+changed: inputs.text$/), expect.stringMatching(/^b\s+run\s+dependency a will run$/)]),
    );
    expect(await snapshot(toy.cache)).toEqual(before);
    expect(await toy.runs()).toHaveLength(4);
  });

  it('explain names the changed field with old and new values', async () => {
    expect((await toy.run('explain', 'b')).stdout).toBe(`b: dependency a will run; never built in ${toy.cache}`);
    await toy.run('build');
    await toy.configure({ text: 'changed' });
    const explained = await toy.run('explain', 'a');
    expect(explained.stdout).toContain('inputs.text: "hello" -> "changed"');
    await toy.configure({});
    const fresh = await toy.run('explain', 'a');
    expect(fresh.stdout).toMatch(/a: fresh; nothing differs/);
  });

  it('refuses cycles and unknown dependencies with exit 2 and creates nothing', async () => {
    await toy.configure({ cycle: true });
    const cycle = await toy.run('build');
    expect(cycle.exitCode).toBe(2);
    expect(cycle.stderr).toContain('dependency cycle: a -> b -> d -> a');
    await toy.configure({ dangling: true });
    const dangling = await toy.run('build');
    expect(dangling.exitCode).toBe(2);
    expect(dangling.stderr).toContain('"d" depends on "nope"');
    await expect(stat(toy.cache)).rejects.toThrow();
  });

  it('usage errors exit 2', async () => {
    expect((await toy.run('frobnicate')).exitCode).toBe(2);
    expect((await toy.run('build', '--concurrency', 'zero')).exitCode).toBe(2);
    expect((await toy.run('build', 'no-such-task')).exitCode).toBe(2);
    expect((await toy.run('build', '--max-size', '1G')).exitCode).toBe(2);
    expect((await toy.run('gc', '--max-size', 'lots')).exitCode).toBe(2);
    const format = await toy.run('build', '--format', 'dot');
    expect(format.exitCode).toBe(2);
    expect(format.stderr).toMatch(/^error: --format applies to `graph` only/);
    // an empty variable (`--cache-dir "$DIR"`) or a second value is refused, never defaulted or overridden
    const empty = await toy.run('build', '--cache-dir', '');
    expect(empty.exitCode).toBe(2);
    expect(empty.stderr).toMatch(/^error: --cache-dir needs a value, not an empty string/);
    const twice = await toy.run('build', '--cache-dir', path.join(toy.dir, 'other'));
    expect(twice.exitCode).toBe(2);
    expect(twice.stderr).toMatch(/^error: --cache-dir is given more than once/);
    await expect(stat(toy.cache)).rejects.toThrow(); // refused before the build made anything
  });

  it('runs independent tasks at the same time', async () => {
    await toy.configure({ sleep: 1 });
    expect((await toy.run('build', '--concurrency', '2')).exitCode).toBe(0);
    const times = lines(await readFile(path.join(toy.markers, 'times.log'), 'utf8'))
      .filter(Boolean)
      .map((l) => l.split(' '))
      .reduce<Record<string, number>>((m, [id, what, ns]) => ({ ...m, [`${id} ${what}`]: Number(BigInt(ns!) / 1_000_000n) }), {});
    // b (after a) and c are independent: each starts before the other ends.
    expect(times['c start']!).toBeLessThan(times['b end']!);
    expect(times['b start']!).toBeLessThan(times['c end']!);
  });

  it('--json writes only NDJSON on stdout, ending with the summary', async () => {
    const result = await toy.run('build', '--json');
    const objects = lines(result.stdout).filter(Boolean).map((l) => JSON.parse(l) as { type: string; status?: string; id?: string });
    expect(objects.at(-1)).toMatchObject({ type: 'summary', ok: true });
    expect(objects.filter((o) => o.type === 'task' && o.status === 'ran').map((o) => o.id).sort()).toEqual(['a', 'b', 'c', 'd']);
    const again = await toy.run('build', '--json');
    expect(again.exitCode, again.stderr).toBe(0);
    const finals = lines(again.stdout).filter(Boolean).map((l) => JSON.parse(l) as { type: string; status?: string; id?: string }).filter((o) => o.type === 'task');
    expect(finals.map((o) => `${o.id} ${o.status}`).sort()).toEqual(['a cached', 'b cached', 'c cached', 'd cached']);
  });

  it('checkpoints a 2 GiB sparse disk holding 16 MiB and restores it under 64 MiB allocated', async () => {
    await toy.configure({ diskMiB: 2048 });
    expect((await toy.run('build', 'disk-copy')).exitCode).toBe(0);
    const artifacts = path.join(toy.cache, 'artifacts');
    let total = 0;
    let disks = 0;
    for (const entry of await readdir(artifacts)) {
      const info = await stat(path.join(artifacts, entry, 'disk.raw')).catch(() => undefined);
      if (!info) continue;
      disks += 1;
      expect(info.size).toBe(2048 * 1024 * 1024);
      total += info.blocks * 512;
    }
    expect(disks).toBe(2); // the checkpoint and its restored working copy
    expect(total).toBeGreaterThanOrEqual(16 * 1024 * 1024); // the data is really there
    expect(total).toBeLessThan(64 * 1024 * 1024);
  });

  it('an error of the engine itself fails that task as data: the other branch goes on, --json ends with its summary', async () => {
    expect((await toy.run('build')).exitCode).toBe(0);
    await toy.configure({ checkThrows: 'c' });
    const result = await toy.run('build', '--json');
    expect(result.exitCode).toBe(1);
    expect(result.stderr).toBe(''); // no stack trace
    const events = lines(result.stdout).filter(Boolean).map((l) => JSON.parse(l) as { type: string; id?: string; status?: string; reason?: string });
    const final = Object.fromEntries(events.filter((e) => e.type === 'task' && e.status !== 'started').map((e) => [e.id, `${e.status}: ${e.reason}`]));
    expect(final).toEqual({
      a: 'cached: fresh in cache',
      b: 'cached: fresh in cache',
      c: 'failed: the cache check of c broke',
      d: 'skipped: dependency c failed',
    });
    expect(events.at(-1)).toMatchObject({ type: 'summary', ok: false });
  });

  it('a cache folder that cannot be written fails the tasks that must run, with the reason, and leaves nothing behind', async () => {
    expect((await toy.run('build')).exitCode).toBe(0);
    await rm(path.join(toy.cache, 'staging'), { recursive: true, force: true });
    await writeFile(path.join(toy.cache, 'staging'), 'not a folder');
    await toy.configure({ text: 'changed' }); // every task must run
    const result = await toy.run('build');
    expect(result.exitCode).toBe(1);
    expect(result.stderr).toBe('');
    expect(result.stdout).toMatch(/^✖ a: failed .*could not prepare a's folders in the cache: ENOTDIR/m);
    expect(result.stdout).toMatch(/^failed in .*: 0 ran, 0 cached, 2 skipped, 2 failed$/m);
    expect(await readdir(path.join(toy.cache, 'work')).catch(() => [])).toEqual([]);
  });

  it('a damaged cache entry is a miss, never a crash', async () => {
    await toy.run('build');
    const artifacts = path.join(toy.cache, 'artifacts');
    for (const entry of await readdir(artifacts)) {
      const file = path.join(artifacts, entry, 'out.txt');
      if ((await readFile(file, 'utf8')) === 'hello') await execa('truncate', ['-s', '0', file]);
    }
    const rerun = await toy.run('build');
    expect(rerun.exitCode).toBe(0);
    expect(rerun.stdout).toMatch(/a: cache entry damaged/);
    expect((await toy.runs()).filter((id) => id === 'a')).toHaveLength(2);
  });

  it('gc evicts an entry whose artifact changed size, naming its task', async () => {
    await toy.run('build');
    const artifacts = path.join(toy.cache, 'artifacts');
    for (const entry of await readdir(artifacts)) {
      const file = path.join(artifacts, entry, 'out.txt');
      if ((await readFile(file, 'utf8').catch(() => '')) === 'hello') await writeFile(file, 'hello, damaged');
    }
    const gc = await toy.run('gc');
    expect(gc.exitCode, gc.stderr).toBe(0);
    expect(gc.stdout).toMatch(/^ {2}evicted a \(damaged\) [0-9a-f]{12} /m);
  });

  it('verify rehashes artifacts and finds a change that kept size and mtime', async () => {
    await toy.run('build');
    expect((await toy.run('verify')).exitCode).toBe(0);
    const artifacts = path.join(toy.cache, 'artifacts');
    for (const entry of await readdir(artifacts)) {
      const file = path.join(artifacts, entry, 'out.txt');
      if ((await readFile(file, 'utf8')) !== 'hello') continue;
      const mtime = (await execa('stat', ['-c', '%y', file])).stdout; // nanoseconds, unlike Date
      await writeFile(file, 'jello'); // same size
      await execa('touch', ['-m', '-d', mtime, file]); // same mtime: the stat check cannot see it
    }
    const verified = await toy.run('verify');
    expect(verified.exitCode).toBe(1);
    expect(verified.stdout).toMatch(/damaged: a [0-9a-f]{12}: out\.txt content changed since publish; evicted/);
    expect(verified.stdout).toMatch(/3 entries intact, 1 damaged/);
    // explain says what plan says, not "never built"
    expect((await toy.run('explain', 'a')).stdout).toBe(`a: cache entry evicted or lost in ${toy.cache}; nothing to compare with`);
    const rebuilt = await toy.run('build');
    expect(rebuilt.stdout).toMatch(/a: ran .*\(cache entry evicted or lost\)/);
  });

  it('gc evicts least recently used entries down to the size asked', async () => {
    await toy.configure({ diskMiB: 64 });
    await toy.run('build', 'disk');
    await toy.configure({ diskMiB: 65 });
    await toy.run('build', 'disk');
    const gc = await toy.run('gc', '--max-size', '20M');
    expect(gc.exitCode).toBe(0);
    expect(gc.stdout).toMatch(/evicted 1 entry/);
    expect(gc.stdout).toMatch(/evicted disk/);
    const plan = await toy.run('plan', 'disk');
    expect(plan.stdout).toMatch(/disk\s+fresh/); // the newest one survived
  });

  it('gc without a size keeps the most recently used entry of each task and evicts the rest', async () => {
    await toy.configure({ diskMiB: 64 });
    expect((await toy.run('build')).exitCode).toBe(0);
    await toy.configure({ diskMiB: 65 });
    expect((await toy.run('build', 'disk')).exitCode).toBe(0);
    await toy.configure({ diskMiB: 66 });
    expect((await toy.run('build', 'disk')).exitCode).toBe(0);
    // back to the first size: a cache hit makes that entry the most recently used one again
    await toy.configure({ diskMiB: 64 });
    expect((await toy.run('build', 'disk')).stdout).toMatch(/0 ran, 1 cached/);
    const gc = await toy.run('gc');
    expect(gc.exitCode, gc.stderr).toBe(0);
    expect(gc.stdout).toMatch(/evicted 2 entries/);
    expect(gc.stdout.match(/^ {2}evicted disk /gm)).toHaveLength(2);
    const kept = await toy.run('build');
    expect(kept.stdout).toMatch(/0 ran, 6 cached/); // a to d, the 64 MiB disk and its copy
    await toy.configure({ diskMiB: 66 });
    expect((await toy.run('plan', 'disk')).stdout).toMatch(/^disk\s+run/m);
    // the task's last run was evicted: explain compares with the entry that was kept
    const explained = await toy.run('explain', 'disk');
    expect(explained.stdout).toMatch(/inputs\.size: 64 -> 66/);
    // with nothing to evict, gc reports what it measured, the same before and after (it reported an
    // emptied cache growing by the folders and the stamp file its index check wrote)
    expect((await toy.run('clean')).exitCode).toBe(0);
    expect((await toy.run('gc')).stdout).toContain('gc: 0 B -> 0 B; evicted 0 entries');
  });

  it('gc removes an artifact folder no index record names, says so, and keeps the entries', async () => {
    expect((await toy.run('build', 'a')).exitCode).toBe(0);
    const orphan = path.join(toy.cache, 'artifacts', 'deadbeef');
    await mkdir(orphan, { recursive: true });
    await writeFile(path.join(orphan, 'out.txt'), 'left by a run killed while publishing');
    const gc = await toy.run('gc', '--max-size', '1G');
    expect(gc.exitCode, gc.stderr).toBe(0);
    expect(gc.stdout).toMatch(/evicted 0 entries, 1 orphan folder\(s\)$/m);
    expect(existsSync(orphan)).toBe(false);
    expect((await toy.run('build', 'a')).stdout).toMatch(/0 ran, 1 cached/);
  });

  it('keeps five logs per task, and gc keeps only the newest', async () => {
    await toy.configure({ diskMiB: 64 });
    for (let i = 0; i < 7; i++) expect((await toy.run('run', 'disk-copy', '--force')).exitCode).toBe(0);
    const logs = path.join(toy.cache, 'logs', 'disk-copy');
    const names = (await readdir(logs)).sort();
    expect(names).toHaveLength(5);
    const newest = names.at(-1)!;
    // the newest one is what `logs` prints, after its path
    expect((await toy.run('logs', 'disk-copy')).stdout.trimEnd()).toBe(`==> ${path.join(logs, newest)} <==\n${(await readFile(path.join(logs, newest), 'utf8')).trimEnd()}`);
    expect((await toy.run('gc')).exitCode).toBe(0);
    expect(await readdir(logs)).toEqual([newest]);
  });

  it('-v prints every line of every command, prefixed with its task', async () => {
    await toy.configure({ text: 'hello' });
    const quiet = await toy.run('build', 'b');
    expect(quiet.stdout).not.toMatch(/^ {2}b\| /m);
    const loud = await toy.run('run', 'b', '--force', '-v');
    expect(loud.exitCode).toBe(0);
    // the toy's b writes its output file with cat and echo; its `sh -c` lines show under its name
    await toy.configure({ text: 'hello', fail: 'b' });
    const failing = await toy.run('run', 'b', '-v');
    expect(failing.stdout).toMatch(/^ {2}b\| about to fail$/m);
    expect(failing.stdout).toMatch(/^ {2}b\| b broke$/m);
  });
});

describe('interruption', () => {
  const waitForGrandchild = () =>
    until(async () => (await readFile(path.join(toy.markers, 'grandchild.pid'), 'utf8').catch(() => '')).trim().length > 0, 'the grandchild pid', 20_000);

  it('Ctrl-C kills the child and its grandchild, runs cleanups, publishes nothing, exits 1 (interrupted)', async () => {
    await toy.configure({ hang: 'c' });
    const run = toy.start('build', 'c');
    await waitForGrandchild();
    const child = Number(await readFile(path.join(toy.markers, 'child.pid'), 'utf8'));
    const grandchild = Number(await readFile(path.join(toy.markers, 'grandchild.pid'), 'utf8'));
    expect(await running(grandchild)).toBe(true);
    run.kill('SIGINT');
    const result = await run;
    expect(result.exitCode).toBe(1);
    expect(result.stdout).toMatch(/^interrupted in /m);
    await until(async () => !(await running(child)) && !(await running(grandchild)), 'both commands to end', 5000);
    expect(await readdir(path.join(toy.cache, 'artifacts')).catch(() => [])).toEqual([]);
    expect(await readdir(path.join(toy.cache, 'staging')).catch(() => [])).toEqual([]);
    expect(await readdir(path.join(toy.cache, 'work')).catch(() => [])).toEqual([]);
    await expect(stat(path.join(toy.cache, 'lock'))).rejects.toThrow();
  });

  it('verify stops on Ctrl-C inside a disk\'s hash, says what it did not check, and exits 1', async () => {
    await toy.configure({ diskMiB: 32768 }); // 32 GiB, sparse: about 20 s of SHA-256 to read it all
    expect((await toy.run('build', 'disk')).exitCode).toBe(0);
    const run = toy.start('verify');
    let stdout = '';
    run.stdout?.on('data', (chunk: Buffer | string) => {
      stdout += chunk.toString();
    });
    // under way inside the disk's hash: the runner has the disk open
    const hashing = async (): Promise<boolean> => {
      const fds = await readdir(`/proc/${run.pid}/fd`).catch(() => [] as string[]);
      const targets = await Promise.all(fds.map((fd) => readlink(`/proc/${run.pid}/fd/${fd}`).catch(() => '')));
      return targets.some((target) => target.endsWith('/disk.raw'));
    };
    await until(hashing, 'verify to open the disk', 30_000);
    expect(stdout).toMatch(/^index: /m);
    run.kill('SIGINT');
    const result = await run;
    expect(result.exitCode).toBe(1);
    expect(result.stderr).toMatch(/^SIGINT: stopping\.\.\.$/m); // not the build's "stopping running tasks"
    expect(result.stdout).toMatch(/^interrupted: 0 entries intact, 0 damaged; 1 of 1 not checked \(run verify again\)$/m);
    expect(result.stdout).not.toMatch(/^\d+ entr(y|ies) intact/m);
    await expect(stat(path.join(toy.cache, 'lock'))).rejects.toThrow();
  });

  it('Ctrl-C while a finished task is copied to an output folder on another file system leaves nothing there; the next build only places it', async () => {
    // /dev/shm is a tmpfs, the cache is under /tmp: the export is a copy (512 MiB of data), not a hard link
    const out = await mkdtemp('/dev/shm/toy-out-');
    try {
      await toy.configure({ diskMiB: 1024, diskDataMiB: 512, exportTo: out });
      const run = toy.start('build', 'disk');
      const copying = async (): Promise<boolean> => (await readdir(out).catch(() => [] as string[])).some((name) => name.startsWith('.disk.raw.partial-'));
      await until(copying, 'the copy into the output folder to start', 60_000, 5);
      run.kill('SIGINT');
      const result = await run;
      expect(result.exitCode).toBe(1);
      expect(result.stdout).toMatch(/^interrupted in /m);
      // an interruption, not an export failure
      expect(result.stdout).toMatch(/^disk\s+failed\s.*\sinterrupted$/m);
      expect(await readdir(out)).toEqual([]); // neither the file nor its partial copy
      // the task itself had finished and was published: the next build takes it from the cache and places it
      const again = await toy.run('build', 'disk');
      expect(again.exitCode).toBe(0);
      expect(again.stdout).toMatch(/^done in .*: 0 ran, 1 cached/m);
      expect((await stat(path.join(out, 'disk.raw'))).size).toBe(1024 * 2 ** 20);
      expect(await readdir(out)).toEqual(['disk.raw']);
    } finally {
      await rm(out, { recursive: true, force: true });
    }
  });

  it('Ctrl-C after every task finished (during a run-end cleanup) lets the cleanup finish and reports the build done, exit 0', async () => {
    await toy.configure({ slowRunEnd: 2 });
    const run = toy.start('build', 'a');
    await until(() => existsSync(path.join(toy.markers, 'run-end.started')), 'the run-end cleanup to start', 20_000);
    run.kill('SIGINT');
    const result = await run;
    expect(result.stderr).toContain('SIGINT: stopping running tasks, cleaning up');
    expect(result.stdout).toContain('the signal came after every task had finished: the build is complete');
    expect(result.stdout).toMatch(/^done in .*: 1 ran/m);
    expect(result.exitCode).toBe(0);
    expect(existsSync(path.join(toy.markers, 'run-end.finished'))).toBe(true);
    expect((await toy.run('build', 'a')).stdout).toMatch(/^done in .*: 0 ran, 1 cached/m);
  });

  it('a second Ctrl-C while the build cleans up is ignored: the cleanup finishes, the message is printed once, exit 1', async () => {
    // a finishes and registers a 2 s run-end cleanup; c hangs until the first Ctrl-C
    await toy.configure({ hang: 'c', slowRunEnd: 2 });
    const run = toy.start('build', 'a', 'c');
    await waitForGrandchild();
    run.kill('SIGINT');
    await until(() => existsSync(path.join(toy.markers, 'run-end.started')), 'the run-end cleanup to start', 20_000);
    run.kill('SIGINT');
    const result = await run;
    expect(result.exitCode).toBe(1);
    expect(result.stdout).toMatch(/^interrupted in /m);
    expect(result.stderr.match(/SIGINT: stopping running tasks/g)).toHaveLength(1);
    expect(existsSync(path.join(toy.markers, 'run-end.finished'))).toBe(true);
    await expect(stat(path.join(toy.cache, 'lock'))).rejects.toThrow();
  });

  it('a closed terminal (SIGHUP) stops the build like Ctrl-C, cleans up and exits 1', async () => {
    await toy.configure({ hang: 'c' });
    const run = toy.start('build', 'c');
    await waitForGrandchild();
    const grandchild = Number(await readFile(path.join(toy.markers, 'grandchild.pid'), 'utf8'));
    run.kill('SIGHUP');
    const result = await run;
    expect(result.exitCode).toBe(1);
    expect(result.stderr).toContain('SIGHUP: stopping running tasks, cleaning up');
    await until(async () => !(await running(grandchild)), 'the grandchild to end', 5000);
    expect(await readdir(path.join(toy.cache, 'staging')).catch(() => [])).toEqual([]);
    await expect(stat(path.join(toy.cache, 'lock'))).rejects.toThrow();
  });

  it('a reader that goes away (| head) does not stop the build', async () => {
    await toy.configure({ sleep: 0.3 });
    const run = toy.start('build');
    // close our end of the pipe at the first line, as head does after its lines
    run.stdout!.once('data', () => run.stdout!.destroy());
    const result = await run;
    expect(result.exitCode).toBe(0);
    expect((await toy.runs()).sort()).toEqual(['a', 'b', 'c', 'd']);
    expect(await readdir(path.join(toy.cache, 'staging'))).toEqual([]);
  });

  it('sweeps what a kill -9 left behind and says so', async () => {
    await toy.configure({ hang: 'c' });
    const run = toy.start('build', 'c');
    await waitForGrandchild();
    run.kill('SIGKILL');
    await run;
    // The orphans of a kill -9 keep running; stop them as a user would.
    for (const name of ['child.pid', 'grandchild.pid']) {
      const pid = Number(await readFile(path.join(toy.markers, name), 'utf8'));
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
    expect(await readdir(path.join(toy.cache, 'staging'))).not.toEqual([]);
    await toy.configure({});
    const next = await toy.run('build', 'c');
    expect(next.exitCode).toBe(0);
    expect(next.stderr).toMatch(/removed the lock of a dead run \(pid \d+/);
    expect(next.stderr).toMatch(/cleanup: removed staging\/\d+\.c\.\w+ left by dead run/);
    expect(await readdir(path.join(toy.cache, 'staging'))).toEqual([]);
    expect(await readdir(path.join(toy.cache, 'work'))).toEqual([]);
  });

  it('never deletes a dead run\'s folder through a mount: it is left in place and said so, and removed once unmounted', async () => {
    const dead = deadPid();
    const folder = path.join(toy.cache, 'work', `${dead}.a.left`);
    // as a killed build's bound /dev: deleting through it would delete the host's files
    const mounted = path.join(folder, 'root', 'dev');
    await mkdir(mounted, { recursive: true });
    await execa('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', mounted]);
    try {
      await writeFile(path.join(mounted, 'host-file'), 'must survive');
      const result = await toy.run('build', 'a');
      expect(result.exitCode, result.stderr).toBe(0);
      expect(result.stderr).toContain(`cleanup: left ${folder} in place: still mounted at ${mounted} (unmount by hand, then rerun)`);
      expect(await readFile(path.join(mounted, 'host-file'), 'utf8')).toBe('must survive');
    } finally {
      await execa('umount', [mounted], { reject: false });
    }
    const again = await toy.run('build', 'a');
    expect(again.stderr).toMatch(new RegExp(`cleanup: removed work/${dead}\\.a\\.left left by dead run ${dead}`));
    expect(existsSync(folder)).toBe(false);
  });

  it('plan, explain, graph and logs take no lock: they answer while a build holds it', async () => {
    expect((await toy.run('build', 'a')).exitCode).toBe(0);
    await toy.configure({ hang: 'c' });
    const build = toy.start('build', 'c');
    try {
      await until(async () => (await readFile(path.join(toy.markers, 'grandchild.pid'), 'utf8').catch(() => '')).trim().length > 0, 'the hanging task', 20_000);
      expect(existsSync(path.join(toy.cache, 'lock'))).toBe(true);
      for (const args of [['plan'], ['explain', 'a'], ['graph'], ['logs', 'a']]) {
        const result = await toy.run(...args);
        expect(result.exitCode, `${args.join(' ')}: ${result.stderr}`).toBe(0);
        expect(result.stderr, args.join(' ')).not.toMatch(/waiting|busy|lock/);
      }
    } finally {
      build.kill('SIGINT');
      await build;
    }
  });

  it('a second build on the same cache waits, or refuses with --no-wait', async () => {
    await toy.configure({ hang: 'c' });
    const first = toy.start('build', 'c');
    await waitForGrandchild();
    const refused = await toy.run('build', 'a', '--no-wait');
    expect(refused.exitCode).toBe(1);
    expect(refused.stderr).toMatch(/is in use by pid \d+/);
    const waiting = toy.start('build', 'a');
    let said = '';
    waiting.stderr?.on('data', (chunk: Buffer) => (said += chunk.toString()));
    await until(() => /waiting for another run \(pid \d+, build\)/.test(said), 'the waiting notice', 20_000);
    expect(await toy.runs()).not.toContain('a'); // it really waits
    first.kill('SIGINT');
    await first;
    const second = await waiting;
    expect(second.exitCode).toBe(0);
    expect(await toy.runs()).toContain('a');
  });
});

// The debugging tools on a real image: shell, logs, doctor, graph, plan, summary.
import { execa } from 'execa';
import { createHash } from 'node:crypto';
import { lstat, readdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { imageProject, type ImageProject } from '../helpers/image.ts';
import { ROOT } from '../helpers/toy.ts';
import { uniquePool } from '../helpers/reliability.ts';
import { running, until } from '../helpers/wait.ts';

const POOL = uniquePool('dtank');
let project: ImageProject;
let built: Awaited<ReturnType<ImageProject['build']>>;

beforeAll(async () => {
  project = await imageProject(POOL);
  built = await project.build();
  expect(built.exitCode, built.stderr).toBe(0);
});
afterAll(() => project.cleanup());

/** The project's config as the build reads it. */
async function readConfig(): Promise<Record<string, unknown>> {
  return JSON.parse(await readFile(project.configFile, 'utf8')) as Record<string, unknown>;
}

/** Every file under the cache with size, mtime and content hash (the lock and work folders excluded). */
async function snapshot(root: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  const walk = async (dir: string): Promise<void> => {
    for (const name of await readdir(dir).catch(() => [] as string[])) {
      const file = path.join(dir, name);
      if (file === path.join(root, 'work') || file === path.join(root, 'lock')) continue;
      const info = await lstat(file);
      if (info.isDirectory()) await walk(file);
      else out[file] = `${info.size} ${info.mtimeMs} ${info.size < 1 << 20 ? createHash('sha256').update(await readFile(file)).digest('hex') : ''}`;
    }
  };
  await walk(root);
  return out;
}

describe('run mount --force', () => {
  it('reruns the mount transaction (install and export-pool with it), nothing after it', async () => {
    const result = await project.run('run', 'mount', '--force', '--json');
    expect(result.exitCode, result.stderr).toBe(0);
    const ran = result.stdout.split('\n').filter(Boolean).map((line) => JSON.parse(line) as { type: string; id?: string; status?: string })
      .filter((event) => event.type === 'task' && event.status === 'ran').map((event) => event.id).sort();
    expect(ran).toEqual(['export-pool', 'install', 'mount']);
    expect((await execa('zpool', ['list', '-H', '-o', 'name'], { reject: false })).stdout).not.toContain(POOL);
  });
});

describe('the mount transaction\'s copies', () => {
  it('copies create-pool\'s checkpoint once (in mount), and export-pool publishes the disk without a second copy', async () => {
    // the transaction that ran last: run mount --force above
    const mount = (await project.run('logs', 'mount')).stdout;
    expect(mount.match(/^\$ cp --reflink=auto --sparse=always -- \S+\/root\.raw \S+\/root\.raw$/gm)).toHaveLength(1);
    // the release export-pool asks for (unmount, export) is the mount's, and logged there
    expect(mount).toMatch(/^\$ \S*zpool export /m);
    const exported = (await project.run('logs', 'export-pool')).stdout;
    expect(exported).not.toMatch(/^\$ (cp|dd|qemu-img) /m);
  });
});

describe('shell <stage> -- CMD', () => {
  it('runs the command in the mounted image and releases everything, leaving the cache untouched', async () => {
    const before = await snapshot(project.cache);
    const script = 'cat etc/motd; cat etc/nixos/zfs-filesystems.nix; ls "$IMAGE_ESP/loader/entries"; zfs list -H -o name,mounted "$IMAGE_POOL/nix"; exit 7';
    const result = await project.run('shell', 'export-pool', '--', 'sh', '-c', script);
    expect(result.exitCode).toBe(7); // the command's own status
    expect(result.stdout).toContain('hello from the image');
    expect(result.stdout).toContain(`device = "${POOL}/nix"`);
    expect(result.stdout).toContain('nixos-demo.conf');
    expect(result.stdout).toMatch(new RegExp(`${POOL}/nix\\s+yes`));
    expect(result.stderr).toMatch(new RegExp(`pool ${POOL} imported from a copy, datasets mounted at .*/root`));
    expect(await readFile('/proc/mounts', 'utf8')).not.toContain(project.dir);
    expect((await execa('zpool', ['list', '-H', '-o', 'name'], { reject: false })).stdout).not.toContain(POOL);
    expect(await readdir(path.join(project.cache, 'work'))).toEqual([]);
    expect(await snapshot(project.cache)).toEqual(before);
  });

  it('on create-pool shows the empty datasets before install, mounted', async () => {
    // the root dataset is mounted at $IMAGE_ROOT (the kernel's table says so), every dataset is, and nothing is installed yet
    const script = 'grep -q " $IMAGE_ROOT fuse" /proc/mounts && echo root-mounted; zfs list -H -o name,mounted -r "$IMAGE_POOL"; ls -A; test ! -e etc/motd';
    const result = await project.run('shell', 'create-pool', '--', 'sh', '-c', script);
    expect(result.exitCode, result.stderr).toBe(0);
    expect(result.stdout).toContain('root-mounted');
    for (const dataset of [`${POOL}/root`, `${POOL}/root/var`, `${POOL}/nix`, `${POOL}/home`]) {
      expect(result.stdout).toMatch(new RegExp(`^${dataset}\\s+yes$`, 'm'));
    }
  });

  it('on a stage after both disks are final (post-vm) opens export-pool\'s root disk and the ESP as install:esp wrote it into the FAT', async () => {
    const result = await project.run('shell', 'post-vm', '--', 'sh', '-c', 'test -f etc/NIXOS && echo installed; ls "$IMAGE_ESP/loader/entries"');
    expect(result.exitCode, result.stderr).toBe(0);
    expect(result.stdout).toContain('installed');
    expect(result.stdout).toContain('nixos-demo.conf');
    expect(result.stderr).toMatch(/copying export-pool's root disk/);
    expect(result.stderr).toMatch(/install:esp: /);
    expect(await readdir(path.join(project.cache, 'work'))).toEqual([]);
  });

  it('tells a command that could not start (127) and one killed by a signal (128 + its number) from one that exited 1', async () => {
    const missing = await project.run('shell', 'partition', '--', '/nonexistent/cmd');
    expect(missing.exitCode).toBe(127);
    expect(missing.stderr).toMatch(/^error: could not run \/nonexistent\/cmd: .*ENOENT/m);
    const killed = await project.run('shell', 'partition', '--', 'sh', '-c', 'kill -TERM $$');
    expect(killed.exitCode).toBe(143);
    expect(killed.stderr).toContain('sh was killed by SIGTERM');
    expect((await project.run('shell', 'partition', '--', 'false')).exitCode).toBe(1);
  });

  it('passes SIGTERM on to the command and what it started in the image (it comes to the runner alone), then releases the stage', async () => {
    const marker = `sleep 293.${process.pid}`;
    // not exec: sleep is the command's child, working in the mounted image, and would keep it busy
    const shell = project.start('shell', 'export-pool', '--', 'sh', '-c', `cd "$IMAGE_ROOT/etc" && ${marker}; echo after`);
    let stderr = '';
    shell.stderr?.on('data', (chunk: Buffer | string) => {
      stderr += chunk.toString();
    });
    // anchored: the runner's own command line holds the marker too
    await until(async () => (await execa('pgrep', ['-f', `^${marker}`], { reject: false })).exitCode === 0, 'the command inside the shell');
    shell.kill('SIGTERM'); // the runner only, as a service manager or `timeout` would
    const result = await shell;
    expect(result.exitCode).toBe(143); // the command's own end: killed by SIGTERM
    expect(stderr).toMatch(/^SIGTERM: passed on to sh and to what else runs in the copy; export-pool is released when they end$/m);
    expect(stderr).not.toMatch(/stopping running tasks/);
    expect((await execa('pgrep', ['-f', `^${marker}`], { reject: false })).exitCode).toBe(1);
    expect(await readFile('/proc/mounts', 'utf8')).not.toContain(project.dir);
    expect((await execa('zpool', ['list', '-H', '-o', 'name'], { reject: false })).stdout).not.toContain(POOL);
    expect(await readdir(path.join(project.cache, 'work'))).toEqual([]);
  });

  it('a process working in the copy that is not the command\'s own is never signalled', async () => {
    const marker = `sleep 299.${process.pid}`;
    const shell = project.start('shell', 'export-pool', '--', 'sh', '-c', `exec ${marker}`);
    let stderr = '';
    shell.stderr?.on('data', (chunk: Buffer | string) => {
      stderr += chunk.toString();
    });
    let outsider: ReturnType<typeof execa> | undefined;
    try {
      await until(async () => (await execa('pgrep', ['-f', `^${marker}`], { reject: false })).exitCode === 0, 'the command inside the shell');
      const root = /datasets mounted at (\S+) \(\$IMAGE_ROOT\)/.exec(stderr)![1]!;
      // as if from another terminal: cd'ed into the copy, but no child of the shell's command
      outsider = execa('sleep', [`298.${process.pid}`], { cwd: path.join(root, 'etc'), reject: false });
      shell.kill('SIGTERM');
      await until(async () => (await execa('pgrep', ['-f', `^${marker}`], { reject: false })).exitCode === 1, 'the command to end', 30_000);
      await new Promise((done) => setTimeout(done, 1_000)); // give a wrong signal time to land
      expect(await running(outsider.pid!)).toBe(true);
      outsider.kill('SIGKILL');
      await outsider;
      const result = await shell;
      expect(result.exitCode).toBe(143);
    } finally {
      outsider?.kill('SIGKILL');
      await shell.catch(() => undefined);
    }
    // whatever the release could not undo while the outsider was there, the next run's sweep does
    await project.run('gc');
    expect(await readFile('/proc/mounts', 'utf8')).not.toContain(project.dir);
    expect((await execa('zpool', ['list', '-H', '-o', 'name'], { reject: false })).stdout).not.toContain(POOL);
    expect(await readdir(path.join(project.cache, 'work'))).toEqual([]);
  });

  it('an interactive shell gets SIGHUP for a SIGTERM (bash ignores SIGTERM) and hangs up the job it started in the image', async () => {
    // a private tmux server, its socket in the project's folder (removed with it): nothing of a server already running leaks in
    const tmux = (...args: string[]) => execa('tmux', ['-S', path.join(project.dir, 'tmux.sock'), ...args], { reject: false });
    const pidFile = path.join(project.dir, 'runner-pid');
    const marker = `sleep 297.${process.pid}`;
    const runner = `${process.execPath} ${path.join(ROOT, 'bin/zfs-image.js')} shell export-pool --config ${project.configFile} --cache-dir ${project.cache} --out ${project.out}`;
    // a terminal for an interactive bash (no history written); `exec` makes the runner the pane's process, whose pid is recorded
    const command = `echo $$ > ${pidFile}; exec env SHELL=/bin/bash HISTFILE=/dev/null ${runner}`;
    await tmux('new-session', '-d', '-s', 'shell', '-x', '160', '-y', '50', command);
    await tmux('set-option', '-t', 'shell', 'remain-on-exit', 'on'); // the pane keeps its screen and exit status
    let pid = 0;
    try {
      const screen = async (): Promise<string> => (await tmux('capture-pane', '-p', '-S', '-', '-t', 'shell')).stdout;
      await until(async () => /\(\$IMAGE_ROOT\)/.test(await screen()), 'the shell to open', 60_000);
      pid = Number(await readFile(pidFile, 'utf8'));
      await tmux('send-keys', '-t', 'shell', `cd "$IMAGE_ROOT/etc" && ${marker} &`, 'Enter');
      await until(async () => (await execa('pgrep', ['-f', `^${marker}`], { reject: false })).exitCode === 0, 'the job in the image');
      process.kill(pid, 'SIGTERM');
      await until(async () => !(await running(pid)), 'the runner to exit', 60_000);
      // tmux learns of the pane's end a moment after the process is gone
      await until(async () => (await tmux('display-message', '-p', '-t', 'shell', '#{pane_dead}')).stdout.trim() === '1', 'tmux to see the pane end', 10_000, 20);
      const status = (await tmux('display-message', '-p', '-t', 'shell', '#{pane_dead_status}')).stdout.trim();
      expect(status).toBe('129'); // bash ended by SIGHUP, and the runner returns its status
      expect((await screen()).replace(/\n/g, '')).toContain('SIGTERM: passed on to /bin/bash as SIGHUP and to what else runs in the copy; export-pool is released when they end');
      expect((await execa('pgrep', ['-f', `^${marker}`], { reject: false })).exitCode).toBe(1);
      expect(await readFile('/proc/mounts', 'utf8')).not.toContain(project.dir);
      expect((await execa('zpool', ['list', '-H', '-o', 'name'], { reject: false })).stdout).not.toContain(POOL);
    } finally {
      await tmux('kill-server');
      await execa('pkill', ['-f', `^${marker}`], { reject: false });
      // a runner still releasing after a failure would hold the pool name the next test uses
      if (pid > 0) await until(async () => !(await running(pid)), 'the runner to finish its release', 60_000).catch(() => undefined);
    }
  });

  it('a build of the same pool name while a shell has it open names that shell, instead of advising to export it', async () => {
    const marker = `sleep 294.${process.pid}`;
    const shell = project.start('shell', 'export-pool', '--', 'sh', '-c', `exec ${marker}`);
    const other = await imageProject(POOL);
    try {
      await until(async () => (await execa('pgrep', ['-f', `^${marker}`], { reject: false })).exitCode === 0, 'the command inside the shell');
      const result = await other.run('build');
      expect(result.exitCode).toBe(1);
      expect(result.stdout).toMatch(
        new RegExp(`create-pool: failed .*a pool named '${POOL}' is already imported on this host by another run of this tool \\(pid ${shell.pid}, a shell, root \\S+/work/${shell.pid}\\.shell\\.\\w+/root\\\), .*end that run first`),
      );
      expect(result.stdout).not.toMatch(/zpool export/);
    } finally {
      await execa('pkill', ['-f', `^${marker}`], { reject: false });
      await shell;
      await other.cleanup();
    }
    expect((await execa('zpool', ['list', '-H', '-o', 'name'], { reject: false })).stdout).not.toContain(POOL);
  });

  it('a shell opened inside another one does not take the outer copy\'s IMAGE_ROOT, IMAGE_POOL or IMAGE_ESP for its own', async () => {
    const outer = { IMAGE_ROOT: '/outer/root', IMAGE_POOL: 'outer', IMAGE_ESP: '/outer/esp' };
    Object.assign(process.env, outer); // the runner inherits this test's environment
    try {
      // partition has an ESP but no pool: IMAGE_ROOT and IMAGE_POOL must be unset, IMAGE_ESP its own
      const result = await project.run('shell', 'partition', '--', 'sh', '-c', 'echo "root=${IMAGE_ROOT-unset} pool=${IMAGE_POOL-unset} esp=$IMAGE_ESP"');
      expect(result.exitCode, result.stderr).toBe(0);
      expect(result.stdout).toMatch(/^root=unset pool=unset esp=\/\S+\/work\/\d+\.shell\.\w+\/esp$/m);
    } finally {
      for (const name of Object.keys(outer)) delete process.env[name];
    }
  });

  it('refuses a stage that holds no disk to open, and opens nothing', async () => {
    for (const stage of ['system', 'create-disks:root']) {
      const result = await project.run('shell', stage, '--', 'sh', '-c', 'echo ran');
      expect(result.exitCode).toBe(1);
      expect(result.stdout).not.toContain('ran');
      expect(result.stderr).toMatch(new RegExp(`^error: could not open ${stage}: ${stage} holds no disk to open: shell opens the pool from create-pool on and the ESP from partition on$`, 'm'));
      expect(await readdir(path.join(project.cache, 'work'))).toEqual([]);
    }
  });

  it('refuses a stage that is not built yet', async () => {
    await project.configure({ rootSize: 144 });
    try {
      const result = await project.run('shell', 'create-pool', '--', 'true');
      expect(result.exitCode).toBe(1);
      expect(result.stderr).toMatch(/not fresh in the cache; run `build create-pool` first/);
    } finally {
      await project.configure({ rootSize: 128 });
    }
  });
});

describe('logs, doctor, graph, plan and the summary', () => {
  it('logs <stage> prints the last log of the stage', async () => {
    const result = await project.run('logs', 'partition');
    expect(result.exitCode).toBe(0);
    expect(result.stdout).toMatch(/^==> .*logs\/partition\/.*\.log <==/);
    expect(result.stdout).toContain('$ parted --script');
    expect(result.stdout).toContain('mkfs.fat');
    // the disk copy is logged as a command too (a raw convert is nothing else)
    expect(result.stdout).toMatch(/^\$ cp --reflink=auto --sparse=always -- \S+boot\.raw \S+boot\.raw\n# exit 0 after \d+ ms$/m);
  });

  it('doctor lists every tool with its version', async () => {
    const result = await project.run('doctor');
    expect(result.exitCode).toBe(0);
    for (const tool of ['qemu-img', 'parted', 'sfdisk', 'mkfs.vfat', 'mcopy', 'nix-store', 'zfs-fuse', 'perl or flock']) {
      expect(result.stdout).toMatch(new RegExp(`^ok\\s+${tool.replace('.', '\\.')}\\s+\\S.*\\d`, 'm'));
    }
  });

  it('build stops with the doctor report and exit 2 when a tool is missing, creating nothing', async () => {
    const result = await execa(process.execPath, ['--import', 'tsx', 'Taskfile.ts', 'build', '--config', project.configFile, '--cache-dir', path.join(project.dir, 'nocache')], {
      cwd: path.resolve(import.meta.dirname, '../..'),
      reject: false,
      env: { CI: '1', PATH: '/nonexistent' },
      extendEnv: false,
    }).catch((e: unknown) => e as { exitCode: number; stderr: string });
    // node itself is found by absolute path; every tool is missing from PATH except those in sbin
    expect(result.exitCode).toBe(2);
    expect(result.stderr).toMatch(/MISSING\s+qemu-img/);
    expect(result.stderr).toMatch(/Debian\/Ubuntu: sudo apt-get install -y .*qemu-utils/);
    expect(result.stderr).toMatch(/NixOS: /);
    await expect(lstat(path.join(project.dir, 'nocache'))).rejects.toThrow();
  });

  it('graph colours each stage by its state', async () => {
    await project.configure({ format: 'vdi' });
    const mermaid = (await project.run('graph')).stdout;
    expect(mermaid).toMatch(/^flowchart LR/);
    expect(mermaid).toMatch(/create_pool\["create-pool<br\/><i>cached<\/i>"\]:::cached/);
    expect(mermaid).toMatch(/convert_root\["convert:root<br\/><i>stale<\/i>"\]:::stale/);
    expect(mermaid).toContain('export_pool --> convert_root');
    const dot = (await project.run('graph', '--format', 'dot')).stdout;
    expect(dot).toMatch(/"convert:boot" \[label="convert:boot\\nstale", fillcolor="#ffe8a3"\]/);
    expect(dot).toContain('"install:esp" -> "convert:boot";');
  });

  it('plan reads at a glance: one line per stage with its state and why, text and --json', async () => {
    const text = (await project.run('plan')).stdout.trim().split('\n');
    expect(text).toHaveLength(13);
    expect(text).toContain(text.find((l) => /^convert:root\s+run\s+changed: inputs\.format$/.test(l)));
    expect(text.find((l) => l.startsWith('create-pool'))).toMatch(/^create-pool\s+fresh\s+fresh in cache$/);
    expect(text.at(-1)).toBe('3 of 12 task(s) would run');
    const json = (await project.run('plan', '--json')).stdout.trim().split('\n').map((l) => JSON.parse(l) as { id: string; action: string; reason: string });
    expect(json.find((p) => p.id === 'post-vm')).toMatchObject({ action: 'run', reason: 'dependency convert:boot will run' });
    expect(json.find((p) => p.id === 'partition')).toMatchObject({ action: 'fresh' });
  });

  it('explain inside the mount transaction shows its own changes beside a rerunning create-pool, and agrees with plan on the mount', async () => {
    const base = { datasets: (await readConfig())['datasets'], contents: (await readConfig())['contents'] };
    // a new dataset reruns create-pool; the new contents entry is install's own change
    await project.configure({
      datasets: { ...(base.datasets as object), [`${POOL}/data`]: { mount: '/data' } },
      contents: [...(base.contents as unknown[]), { source: 'motd', target: '/etc/motd.extra' }],
    });
    try {
      const install = (await project.run('explain', 'install')).stdout;
      expect(install).toMatch(/^install: \d+ field\(s\) differ from the entry the last build used \(published /);
      expect(install).toMatch(/^ {2}inputs\.contents: .*motd\.extra/m);
      expect(install).toMatch(/^ {2}deps\.mount: /m);
      const mount = (await project.run('explain', 'mount')).stdout.trim();
      const planned = (await project.run('plan')).stdout.split('\n').find((line) => line.startsWith('mount '))!;
      const reason = planned.replace(/^mount\s+run\s+/, '');
      expect(reason).toBe('dependency create-pool will run');
      expect(mount).toBe(`mount: ${reason}`);
    } finally {
      await project.configure(base);
    }
  });

  it('the summary gives status, duration and bytes per stage, in text and in --json', async () => {
    const text = await project.run('build');
    expect(text.exitCode).toBe(0);
    expect(text.stdout).toMatch(/^task\s+status\s+time\s+written\s+why$/m);
    expect(text.stdout).toMatch(/^convert:root\s+ran\s+\d+(\.\d+)?m?s\s+\d+(\.\d)? (KiB|MiB)\s+changed: inputs\.format$/m);
    expect(text.stdout).toMatch(/^create-pool\s+cached\s+0ms\s+-\s+fresh in cache$/m);
    expect(text.stdout).toMatch(/^done in .*: 3 ran, 8 cached, 1 skipped, 0 failed$/m); // mount: not needed
    await project.configure({ format: 'raw' });
    const json = await project.build();
    const summary = JSON.parse(json.stdout.trim().split('\n').at(-1)!) as { type: string; ok: boolean; tasks: { id: string; status: string; durationMs: number; bytes: number }[] };
    expect(summary).toMatchObject({ type: 'summary', ok: true });
    const convert = summary.tasks.find((t) => t.id === 'convert:root')!;
    expect(convert.status).toBe('cached'); // raw was converted in beforeAll
    expect(summary.tasks).toHaveLength(12);
    for (const t of summary.tasks) expect(typeof t.bytes).toBe('number');
  });

  it('qemu-img convert\'s progress reaches the CI output, and the closure copy its summary line the log (per-batch progress: copy-closure.test.ts)', async () => {
    await project.configure({ format: 'qcow2' });
    const result = await project.run('build');
    expect(result.stdout).toMatch(/^ {2}convert:root: 100% root disk$/m);
    const install = (await project.run('logs', 'install')).stdout;
    expect(install).toMatch(/copied 2 store paths \(\d+(\.\d)? MiB\)/);
  });
});

// last in this file: clean empties the cache the tests above share
describe('a shell left open', () => {
  it('does not hold the cache lock: a build on the same cache runs; clean keeps the shell\'s mounted copy and says so, and leaves the output folder alone', async () => {
    expect((await project.build()).exitCode).toBe(0);
    const marker = `sleep 295.${process.pid}`;
    const shell = project.start('shell', 'export-pool', '--', 'sh', '-c', `cd "$IMAGE_ROOT/etc" && ${marker}`);
    try {
      await until(async () => (await execa('pgrep', ['-f', `^${marker}`], { reject: false })).exitCode === 0, 'the command inside the shell');
      const build = await project.run('build', '--no-wait');
      expect(build.exitCode, build.stderr).toBe(0);
      expect(build.stdout).toMatch(/^done in .*: 0 ran, 11 cached, 1 skipped, 0 failed$/m);
      const outBefore = await snapshot(project.out);
      // as in this repository's own cache/ folder
      await writeFile(path.join(project.cache, '.gitignore'), '*\n');
      const [copy] = await readdir(path.join(project.cache, 'work'));
      expect(copy).toMatch(/^\d+\.shell\./);
      const clean = await project.run('clean', '--no-wait');
      expect(clean.exitCode, clean.stderr).toBe(0);
      expect(clean.stdout).toMatch(/^cleaned .*; kept .*work\/\d+\.shell\.\S+ \(still mounted: a shell is open on it\)$/m);
      expect((await readdir(project.cache)).sort()).toEqual(['.gitignore', 'work']);
      expect(await readdir(path.join(project.cache, 'work'))).toEqual([copy]);
      expect(await readFile(path.join(project.cache, 'work', copy!, 'root', 'etc', 'motd'), 'utf8')).toContain('hello from the image');
      expect(await snapshot(project.out)).toEqual(outBefore);
    } finally {
      await execa('pkill', ['-f', `^${marker}`], { reject: false });
      await shell;
    }
    // the shell still releases its stage once its command ends
    expect(await readFile('/proc/mounts', 'utf8')).not.toContain(project.dir);
    expect((await execa('zpool', ['list', '-H', '-o', 'name'], { reject: false })).stdout).not.toContain(POOL);
    expect(await readdir(path.join(project.cache, 'work'))).toEqual([]);
  });
});

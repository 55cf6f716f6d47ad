// The README's first command: the embedded demo config builds an image pair offline.
import { execa } from 'execa';
import { mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { children, cleanupSteps, importedPools, releaseAndRemove } from '../helpers/reliability.ts';
import { ROOT } from '../helpers/toy.ts';

// The embedded config's pool name: a host that already has a pool called tank cannot build the demo.
const DEMO_POOL = 'tank';
let dir: string;
let hostHasTank = false;
const started = children();
beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'demo-'));
  hostHasTank = (await importedPools()).includes(DEMO_POOL);
});
afterAll(() =>
  cleanupSteps(
    () => started.settle(1_000),
    // a tank is exported only if it is the failed build's own: its vdev lies in this test's folder
    async () => releaseAndRemove(dir, (await demoPoolIsOurs()) ? [DEMO_POOL] : [], () => rm(dir, { recursive: true, force: true })),
  ),
);

/** Whether the imported `tank` (if any) is this test's: zpool status names its vdev by path. */
async function demoPoolIsOurs(): Promise<boolean> {
  const status = await execa('zpool', ['status', DEMO_POOL], { reject: false });
  return status.exitCode === 0 && status.stdout.includes(`${dir}/`);
}

describe('the demo', () => {
  it('builds with the embedded config and describes what it built', async (ctx) => {
    if (hostHasTank) ctx.skip();
    // the README's first command (after setup): npx zfs-image build
    const result = await started.track(execa('npx', ['--no-install', 'zfs-image', 'build', '--cache-dir', path.join(dir, 'cache'), '--out', path.join(dir, 'result')], {
      cwd: ROOT,
      reject: false,
      env: { CI: '1' },
    }));
    expect(result.exitCode, result.stdout + result.stderr).toBe(0);
    expect(result.stdout).toMatch(/done in .*: 12 ran, 0 cached, 0 skipped, 0 failed/);
    expect((await readdir(path.join(dir, 'result'))).sort()).toEqual(['image-info.json', 'nixos.boot.qcow2', 'nixos.root.qcow2']);
    const info = JSON.parse(await readFile(path.join(dir, 'result/image-info.json'), 'utf8')) as { name: string; format: string; system: { toplevel: string } };
    expect(info).toMatchObject({ name: 'nixos-zfs-demo', format: 'qcow2' });
    expect(info.system.toplevel).toMatch(/^\/nix\/store\/[a-z0-9]{32}-nixos-system-demo/);
    for (const disk of ['boot', 'root']) await execa('qemu-img', ['check', path.join(dir, `result/nixos.${disk}.qcow2`)]);
  });

  it('Taskfile.ts run from its sources (tsx) agrees with the bundle: everything is cached', async (ctx) => {
    if (hostHasTank) ctx.skip();
    const result = await started.track(execa(process.execPath, ['--import', 'tsx', 'Taskfile.ts', 'build', '--cache-dir', path.join(dir, 'cache'), '--out', path.join(dir, 'result')], {
      cwd: ROOT,
      reject: false,
      env: { CI: '1' },
    }));
    expect(result.exitCode, result.stdout + result.stderr).toBe(0);
    expect(result.stdout).toMatch(/done in .*: 0 ran, 11 cached, 1 skipped, 0 failed/);
  });
  it('the README\'s own Taskfile (an upload task after post-vm) type-checks and works as the README says', async (ctx) => {
    if (hostHasTank) ctx.skip();
    const readme = await readFile(path.join(ROOT, 'README.md'), 'utf8');
    const section = readme.slice(readme.indexOf('\n## Writing your own tasks\n'));
    const code = /```ts\n([\s\S]*?)```/.exec(section)?.[1];
    expect(code).toContain("id: 'upload'");
    // beside Taskfile.ts, so its ./lib imports resolve; checked with the project's own compiler options
    const file = path.join(ROOT, `.readme-taskfile-${process.pid}.ts`);
    const tsconfig = path.join(ROOT, `.readme-tsconfig-${process.pid}.json`);
    await writeFile(file, code!);
    await writeFile(tsconfig, JSON.stringify({ extends: './tsconfig.json', include: [path.basename(file)] }));
    try {
      const typecheck = await execa(path.join(ROOT, 'node_modules/.bin/tsc'), ['-p', tsconfig], { cwd: ROOT, reject: false });
      expect(typecheck.exitCode, typecheck.stdout).toBe(0);
      const uploads = path.join(dir, 'uploads');
      const run = (...args: string[]) =>
        started.track(execa(process.execPath, ['--import', 'tsx', file, ...args, '--cache-dir', path.join(dir, 'cache'), '--out', path.join(dir, 'result')], {
          cwd: ROOT,
          reject: false,
          env: { CI: '1', UPLOAD_DIR: uploads },
        }));
      // the demo built above is in the cache: only the new task runs
      const first = await run('build');
      expect(first.exitCode, first.stdout + first.stderr).toBe(0);
      expect(first.stdout).toMatch(/done in .*: 1 ran, 11 cached, 1 skipped, 0 failed/);
      expect(await readdir(uploads)).toEqual(['nixos.root.qcow2']);
      expect((await run('build', 'upload')).stdout).toMatch(/done in .*: 0 ran, 12 cached, 1 skipped, 0 failed/);
      expect((await run('run', 'upload', '--force')).stdout).toMatch(/done in .*: 1 ran, 11 cached, 1 skipped, 0 failed/);
      const explained = await run('explain', 'upload');
      expect(explained.exitCode, explained.stderr).toBe(0);
      const graph = await run('graph');
      expect(graph.stdout).toMatch(/post_vm --> upload/);
    } finally {
      await rm(file, { force: true });
      await rm(tsconfig, { force: true });
    }
  });
});

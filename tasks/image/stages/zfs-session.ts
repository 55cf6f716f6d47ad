import { mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { isAlive } from '../../../lib/caching/lock.ts';
import type { TaskContext } from '../../../lib/engine/task.ts';
import type { ZfsDriver } from '../zfs/driver.ts';

/** Builds using a ZFS daemon register here (one file per pid), so none stops it under another. */
export const ZFS_USERS_DIR = '/run/nixos-zfs-image/zfs-users';

/** Names the build that started the zfs-fuse daemon, so the last build out can stop it if that one is gone. */
const STARTER_FILE = '/run/nixos-zfs-image/zfs-fuse-started-by';

/** Live pids other than ours that registered as ZFS users; dead ones are removed. */
export async function otherZfsUsers(dir = ZFS_USERS_DIR): Promise<number[]> {
  const others: number[] = [];
  for (const name of await readdir(dir).catch(() => [] as string[])) {
    const pid = Number(name);
    if (!Number.isInteger(pid) || pid === process.pid) continue;
    if (isAlive(pid)) others.push(pid);
    else await rm(path.join(dir, name), { force: true });
  }
  return others;
}

/**
 * Makes ZFS usable for the rest of the run. The zfs-fuse daemon takes seconds to stop, so
 * one daemon serves every stage of a build and is stopped once at its end, if a build started
 * it and no other build is using it (the last one out stops it, even if another build started it).
 */
export async function ensureZfs(ctx: TaskContext<any>, driver: ZfsDriver): Promise<void> {
  const marker = path.join(ZFS_USERS_DIR, String(process.pid));
  await mkdir(ZFS_USERS_DIR, { recursive: true });
  await writeFile(marker, `${new Date().toISOString()}\n`);
  const session = await driver.prepare();
  if (session.started) {
    ctx.log(`started the ${driver.name} daemon; it is stopped when the build ends`);
    await writeFile(STARTER_FILE, `${process.pid}\n`);
  }
  ctx.atRunEnd(`zfs:${driver.name}`, async () => {
    await rm(marker, { force: true });
    const others = await otherZfsUsers();
    if (others.length > 0) {
      if (session.started) ctx.log(`left the ${driver.name} daemon running: builds ${others.join(', ')} still use it`);
      return;
    }
    if (session.started) {
      const result = await session.stop();
      await rm(STARTER_FILE, { force: true });
      if (!result.stopped && result.reason) throw new Error(result.reason);
      return;
    }
    const starter = Number((await readFile(STARTER_FILE, 'utf8').catch(() => '')).trim());
    if (driver.name === 'zfs-fuse' && starter > 0 && !isAlive(starter)) {
      // The build that started the daemon has ended (or was killed) while we used it: we are the last user.
      const stopped = await stopZfsFuseDaemon(ctx);
      if (stopped) await rm(STARTER_FILE, { force: true });
    }
  });
}

/** Stops a zfs-fuse daemon no build owns any more, unless a pool is still imported in it. */
async function stopZfsFuseDaemon(ctx: TaskContext<any>): Promise<boolean> {
  const pools = await ctx.exec('zpool', ['list', '-H', '-o', 'name'], { quiet: true }).then((r) => r.stdout.trim(), () => '');
  if (pools !== '') {
    ctx.log(`left zfs-fuse running: pools still imported (${pools.split('\n').join(', ')})`);
    return false;
  }
  const pids = await daemonPids();
  for (const pid of pids) process.kill(pid, 'SIGTERM');
  const deadline = Date.now() + 30_000;
  while ((await daemonPids()).length > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 200));
  ctx.log(`stopped the zfs-fuse daemon a finished build had started (pid ${pids.join(', ')})`);
  return true;
}

/** Pids of live (not zombie) zfs-fuse processes, from /proc. */
async function daemonPids(): Promise<number[]> {
  const pids: number[] = [];
  for (const name of await readdir('/proc').catch(() => [] as string[])) {
    if (!/^\d+$/.test(name)) continue;
    const stat = await readFile(`/proc/${name}/stat`, 'utf8').catch(() => '');
    const open = stat.indexOf('(');
    const close = stat.lastIndexOf(')');
    if (stat.slice(open + 1, close) === 'zfs-fuse' && stat[close + 2] !== 'Z') pids.push(Number(name));
  }
  return pids;
}

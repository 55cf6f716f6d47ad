import { mkdir, readdir, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { isAlive } from '../../../lib/caching/lock.ts';
import type { TaskContext } from '../../../lib/engine/task.ts';
import type { ZfsDriver } from '../zfs/driver.ts';

/** Builds using a ZFS daemon register here (one file per pid), so none stops it under another. */
export const ZFS_USERS_DIR = '/run/nixos-zfs-image/zfs-users';

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
 * one daemon serves every stage of a build and is stopped once at its end, if we started it
 * and no other build is using it.
 */
export async function ensureZfs(ctx: TaskContext<any>, driver: ZfsDriver): Promise<void> {
  const marker = path.join(ZFS_USERS_DIR, String(process.pid));
  await mkdir(ZFS_USERS_DIR, { recursive: true });
  await writeFile(marker, `${new Date().toISOString()}\n`);
  const session = await driver.prepare();
  if (session.started) ctx.log(`started the ${driver.name} daemon; it is stopped when the build ends`);
  ctx.atRunEnd(`zfs:${driver.name}`, async () => {
    await rm(marker, { force: true });
    if (!session.started) return;
    const others = await otherZfsUsers();
    if (others.length > 0) {
      ctx.log(`left the ${driver.name} daemon running: builds ${others.join(', ')} still use it`);
      return;
    }
    const result = await session.stop();
    if (!result.stopped && result.reason) throw new Error(result.reason);
  });
}

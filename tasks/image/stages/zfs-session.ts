import type { TaskContext } from '../../../lib/engine/task.ts';
import type { ZfsDriver } from '../zfs/driver.ts';

/**
 * Makes ZFS usable for the rest of the run. The zfs-fuse daemon takes seconds to stop, so
 * one daemon serves every stage of a build and is stopped once at its end, if we started it.
 */
export async function ensureZfs(ctx: TaskContext<any>, driver: ZfsDriver): Promise<void> {
  const session = await driver.prepare();
  if (!session.started) return;
  ctx.log(`started the ${driver.name} daemon; it is stopped when the build ends`);
  ctx.atRunEnd(`zfs:${driver.name}`, async () => {
    const result = await session.stop();
    if (!result.stopped && result.reason) throw new Error(result.reason);
  });
}

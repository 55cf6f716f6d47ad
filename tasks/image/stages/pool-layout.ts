import type { Exec } from '../../../lib/execution/types.ts';
import type { AdaptedProperties, ZfsDriver, ZfsDriverName } from '../zfs/driver.ts';

/** What the root-disk stages know about ZFS beyond the config: the driver and the properties it will really set. */
export interface PoolLayout {
  readonly driver: ZfsDriverName;
  readonly properties: AdaptedProperties;
  /** Programs whose binaries are part of the pool stages' fingerprints. */
  readonly tools: readonly string[];
  /** A driver running its commands through a task's exec (logged, abortable). */
  makeDriver(exec: Exec): ZfsDriver;
}

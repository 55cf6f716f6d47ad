/** Slots for running units, at most `concurrency` at a time. */
export interface SlotPool {
  /** Resolves once a slot is free for this waiter; higher priorities get one first. */
  acquire(priority: number): Promise<void>;
  /** Gives a slot back. */
  release(): void;
}

/**
 * Free slots go to the waiters with the highest priority (the longest chain of work after them),
 * first come among equals.
 */
export function createSlotPool(concurrency: number): SlotPool {
  let running = 0;
  const waiters: { priority: number; wake: () => void }[] = [];
  let dispatchQueued = false;
  const dispatch = (): void => {
    while (running < concurrency && waiters.length > 0) {
      running += 1;
      waiters.shift()!.wake();
    }
  };
  return {
    acquire: (priority) =>
      new Promise<void>((wake) => {
        const at = waiters.findIndex((w) => w.priority < priority);
        waiters.splice(at === -1 ? waiters.length : at, 0, { priority, wake });
        // Deferred a turn, so units that become ready together compete by priority, not by arrival.
        if (dispatchQueued) return;
        dispatchQueued = true;
        setImmediate(() => {
          dispatchQueued = false;
          dispatch();
        });
      }),
    release() {
      running -= 1;
      dispatch();
    },
  };
}

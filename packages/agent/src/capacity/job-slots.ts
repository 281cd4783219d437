import { Status } from 'nice-grpc-common';
import { CapacityError } from '../errors.js';

/** Releases a slot taken with {@link JobSlots.acquire} (idempotent). */
export type ReleaseSlot = () => void;

/** At most `maxConcurrent` jobs run; up to `maxQueue` wait in FIFO order; beyond that, refusal. */
export interface JobSlots {
  /**
   * Waits for a slot. Throws {@link CapacityError} RESOURCE_EXHAUSTED at once when the queue is
   * full; rejects with the signal's reason when `signal` aborts while queued (leaving the queue).
   */
  acquire(signal: AbortSignal): Promise<ReleaseSlot>;
  readonly running: number;
  readonly queued: number;
  readonly maxConcurrent: number;
  readonly maxQueue: number;
  /** Called after every change of `running` or `queued`. */
  onChange(listener: () => void): void;
}

/**
 * Creates {@link JobSlots}.
 *
 * @example
 * ```ts
 * const slots = createJobSlots({ maxConcurrent: 4, maxQueue: 8 });
 * const release = await slots.acquire(signal);
 * try { await generate(); } finally { release(); }
 * ```
 */
export function createJobSlots(options: { maxConcurrent: number; maxQueue: number }): JobSlots {
  const { maxConcurrent, maxQueue } = options;
  let running = 0;
  const queue: { grant: () => void }[] = [];
  const listeners: (() => void)[] = [];
  const changed = () => {
    for (const l of listeners) l();
  };
  const makeRelease = (): ReleaseSlot => {
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const next = queue.shift();
      if (next) next.grant();
      else running--;
      changed();
    };
  };
  return {
    get running() {
      return running;
    },
    get queued() {
      return queue.length;
    },
    maxConcurrent,
    maxQueue,
    onChange(listener) {
      listeners.push(listener);
    },
    acquire(signal) {
      if (signal.aborted) return Promise.reject(signal.reason as Error);
      if (running < maxConcurrent) {
        running++;
        changed();
        return Promise.resolve(makeRelease());
      }
      if (queue.length >= maxQueue) {
        return Promise.reject(
          new CapacityError(
            `agent is busy: ${running} jobs running and ${queue.length} queued (max ${maxConcurrent} + ${maxQueue}); retry later or on another agent`,
            Status.RESOURCE_EXHAUSTED,
            {
              running,
              queued: queue.length,
            },
          ),
        );
      }
      return new Promise<ReleaseSlot>((resolve, reject) => {
        const entry = {
          grant: () => {
            signal.removeEventListener('abort', onAbort);
            resolve(makeRelease());
          },
        };
        const onAbort = () => {
          const i = queue.indexOf(entry);
          if (i >= 0) queue.splice(i, 1);
          changed();
          reject(signal.reason as Error);
        };
        signal.addEventListener('abort', onAbort, { once: true });
        queue.push(entry);
        changed();
      });
    },
  };
}

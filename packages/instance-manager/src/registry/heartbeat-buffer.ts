/** A batch of heartbeats being written: instance id → time of its latest acknowledged check (unix ms). */
export type HeartbeatBatch = Map<string, number>;

/**
 * What one replica keeps in memory so that a health check costs no storage round trip: the
 * ids it knows to be alive in storage, and the health checks it acknowledged but has not
 * written yet (flushed in batches by the registry).
 *
 * The set of live ids only ever errs on the safe side: an id is added while the transaction
 * that made or found it alive holds the store's lock, and removed before any write that kills
 * it (and when a write of it finds it dead). An id missing from the set only means "ask the
 * storage".
 */
export interface HeartbeatBuffer {
  /** Whether `id` is known to be alive in storage. */
  isKnownAlive(id: string): boolean;
  /** `id` is alive in storage (called inside the transaction that made or found it so). */
  markAlive(id: string): void;
  /** Forgets that `id` is alive (it is being killed, or another replica killed it). */
  forget(id: string): void;
  /** Buffers an acknowledged health check of a known-alive instance. */
  record(id: string, nowMs: number): void;
  /** The latest acknowledged but possibly unwritten health check of `id` (unix ms); -Infinity when none. */
  latest(id: string): number;
  /** Health checks buffered and not yet handed to a writer. */
  readonly size: number;
  /**
   * Hands every buffered health check to a writer, merged into `batch` (the batch of an earlier
   * attempt of the same write, retried) or a new batch. Until {@link written} or {@link failed},
   * {@link latest} still counts them.
   */
  take(batch?: HeartbeatBatch): HeartbeatBatch;
  /** The batch is in storage; `missed` are ids whose rows were dead or unknown (forgotten). */
  written(batch: HeartbeatBatch, missed: readonly string[]): void;
  /** The batch could not be written: its checks are buffered again for the next write. */
  failed(batch: HeartbeatBatch): void;
}

/** Creates an empty {@link HeartbeatBuffer}. */
export function createHeartbeatBuffer(): HeartbeatBuffer {
  const alive = new Set<string>();
  let pending: HeartbeatBatch = new Map();
  const writing = new Set<HeartbeatBatch>();

  const latest = (id: string): number => {
    let ms = pending.get(id) ?? Number.NEGATIVE_INFINITY;
    for (const batch of writing) {
      const b = batch.get(id);
      if (b !== undefined && b > ms) ms = b;
    }
    return ms;
  };

  return {
    isKnownAlive: (id) => alive.has(id),
    markAlive(id) {
      alive.add(id);
    },
    forget(id) {
      alive.delete(id);
    },
    record(id, nowMs) {
      const before = pending.get(id);
      if (before === undefined || nowMs > before) pending.set(id, nowMs);
    },
    latest,
    get size() {
      return pending.size;
    },
    take(batch) {
      const taken = pending;
      pending = new Map();
      if (!batch) {
        writing.add(taken);
        return taken;
      }
      for (const [id, ms] of taken) if (ms > (batch.get(id) ?? Number.NEGATIVE_INFINITY)) batch.set(id, ms);
      writing.add(batch);
      return batch;
    },
    written(batch, missed) {
      writing.delete(batch);
      for (const id of missed) alive.delete(id);
    },
    failed(batch) {
      writing.delete(batch);
      for (const [id, ms] of batch) if (ms > (pending.get(id) ?? Number.NEGATIVE_INFINITY)) pending.set(id, ms);
    },
  };
}

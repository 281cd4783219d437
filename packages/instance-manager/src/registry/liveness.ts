import { instanceManager } from '@titancompute/protocol';
import { INSTANCE_MANAGER_DEFAULTS } from '../config.js';
import type { InstanceRecord, Store, StoreTx } from '../store/store.js';
import { createHeartbeatBuffer, type HeartbeatBatch } from './heartbeat-buffer.js';
import { deathMessage, deathStatus, removedEvent } from './proto-mapping.js';
import type { HealthCheckResult, Outage, RegistryOptions } from './registry.js';

const { HealthStatus, RemovalReason } = instanceManager;

/** Cutoff that makes nothing stale (health timestamps are never negative). */
const NOTHING_STALE = Number.MIN_SAFE_INTEGER;

/** What {@link Liveness.liveInTx} found: the record when live, else why not. */
export interface LiveLookup {
  record?: InstanceRecord;
  message: string;
  status: instanceManager.HealthStatus;
}

/** A store transaction of the registry: it also says which instances it found alive. */
export interface LivenessTx extends StoreTx {
  /** `id` is alive: its health checks may be answered from memory from now on. */
  noteAlive(id: string): void;
}

const ALIVE: HealthCheckResult = Object.freeze({ healthy: true, message: '', status: HealthStatus.HEALTH_STATUS_ALIVE });

/**
 * Who is alive: health checks, staleness judged within the registry's up period (the grace after
 * an outage), sweeps, and the cascade of a death to every descendant.
 *
 * Health checks of instances known to be alive are answered from memory and written in one
 * transaction per flush interval (`healthFlushIntervalMs`); everything that judges staleness
 * (sweeps, the checks of a transaction, reads) counts the acknowledged checks not written yet,
 * so staleness is judged on exactly the checks that were acknowledged.
 */
export interface Liveness {
  readonly staleTimeoutMs: number;
  /** The store's clock. */
  now(): number;
  /** Start of the current up period as last read by this replica (unix ms). */
  upSinceMs(): number;
  /** Health checks older than this are stale at `nowMs` (time before the up period does not count). */
  staleCutoff(nowMs: number): number;
  /** Whether a record is alive and not stale right now (counting acknowledged checks not written yet). */
  isLive(record: InstanceRecord): boolean;
  /** The record with its last health check brought up to the latest acknowledged one. */
  current(record: InstanceRecord): InstanceRecord;
  /**
   * `store.transaction`, keeping in step what this replica knows to be alive: what the
   * transaction inserts or {@link LivenessTx.noteAlive notes} becomes known alive (unless it fails),
   * what it kills is forgotten before it is killed.
   */
  transaction<T>(fn: (tx: LivenessTx) => Promise<T>): Promise<T>;
  /** Writes the acknowledged health checks not written yet (one transaction). */
  flush(): Promise<void>;
  /** Forgets that `id` is alive (another replica killed it): its next health check reads the storage. */
  forget(id: string): void;
  /**
   * Kills `rootId` and every live descendant (PARENT_DIED); emits one REMOVED per instance.
   * With `onlyIfStaleBefore`, the root dies only if its last check is still older than that.
   * Returns the ids that died.
   */
  killTree(tx: StoreTx, rootId: string, reason: instanceManager.RemovalReason, message: string, nowMs: number, onlyIfStaleBefore?: number): Promise<string[]>;
  /** Inside a transaction: the record if it is live; a stale one is killed on the spot. */
  liveInTx(tx: StoreTx, id: string, nowMs: number): Promise<LiveLookup>;
  /** See {@link Registry.sweep}. */
  sweep(): Promise<string[]>;
  /** Sweeps first when some live instance is stale, so reads never see one. */
  ensureSwept(): Promise<void>;
  /** TryHealthCheck: records a check of a live instance, or says why it is not alive. */
  healthCheck(id: string): Promise<HealthCheckResult>;
}

/** Creates the {@link Liveness} part of a registry over a store. */
export function createLiveness(store: Store, options: RegistryOptions): Liveness {
  const stale = options.staleTimeoutMs;
  const now = options.now ?? Date.now;
  const outageGapMs = options.outageGapMs ?? INSTANCE_MANAGER_DEFAULTS.minOutageGapMs;
  const soleReplica = options.soleReplica ?? store.backend !== 'postgres';
  const flushIntervalMs = options.healthFlushIntervalMs ?? INSTANCE_MANAGER_DEFAULTS.healthFlushIntervalMs;
  const beats = createHeartbeatBuffer();
  let swept = false;
  // Until the first sweep reads the shared up period: grace from this replica's creation.
  let upSince = now();
  /**
   * A lower bound of the last health check of every live row in storage (unknown, so -Infinity,
   * until the first sweep). Stored checks only move forward and new rows start at their
   * insertion time, so a bound read once stays a bound: while it is not older than the stale
   * cutoff, no live instance is stale and a health check needs no storage round trip.
   */
  let oldestBound = Number.NEGATIVE_INFINITY;
  /**
   * Health checks older than this are stale at `nowMs`. Time before the current up period
   * does not count: an instance is stale only when max(last check, up since) is older than
   * the stale timeout.
   */
  const staleCutoff = (nowMs: number): number => {
    const cutoff = nowMs - stale;
    return upSince < cutoff ? cutoff : NOTHING_STALE;
  };
  /** The record's last health check, counting acknowledged checks not written yet. */
  const lastHealthOf = (r: InstanceRecord): number => Math.max(r.lastHealthMs, beats.latest(r.id));
  const isLive = (r: InstanceRecord) => r.alive && lastHealthOf(r) >= staleCutoff(now());
  const current = (r: InstanceRecord): InstanceRecord => {
    const latest = beats.latest(r.id);
    return latest > r.lastHealthMs ? { ...r, lastHealthMs: latest } : r;
  };

  async function transaction<T>(fn: (tx: LivenessTx) => Promise<T>): Promise<T> {
    const noted: string[] = [];
    const noteAlive = (id: string) => {
      beats.markAlive(id);
      noted.push(id);
    };
    try {
      return await store.transaction((tx) =>
        fn({
          ...tx,
          noteAlive,
          insertInstance: async (record) => {
            await tx.insertInstance(record);
            if (record.alive) noteAlive(record.id);
          },
          markDead: (id, death) => {
            beats.forget(id);
            return tx.markDead(id, death);
          },
        }),
      );
    } catch (err) {
      // Not committed: what it found alive is not known after all.
      for (const id of noted) beats.forget(id);
      throw err;
    }
  }

  /** Writes `take()`n heartbeats inside `tx`; the caller settles the batch once the transaction ended. */
  const writeBeats = async (tx: StoreTx, batch: HeartbeatBatch | undefined) => {
    const taken = beats.take(batch);
    return { batch: taken, missed: await tx.touchMany(taken) };
  };

  let flushTimer: NodeJS.Timeout | undefined;
  let flushing: Promise<void> | undefined;
  const flushNow = async (): Promise<void> => {
    if (beats.size === 0) return;
    let batch: HeartbeatBatch | undefined;
    try {
      const written = await store.transaction(async (tx) => {
        const w = await writeBeats(tx, batch);
        batch = w.batch;
        return w;
      });
      beats.written(written.batch, written.missed);
    } catch (err) {
      if (batch) beats.failed(batch);
      throw err;
    }
  };
  const runFlush = (): Promise<void> => {
    flushing ??= flushNow()
      .catch((err: unknown) => options.onFlushError?.(err))
      .finally(() => {
        flushing = undefined;
        if (beats.size > 0) scheduleFlush();
      });
    return flushing;
  };
  function scheduleFlush() {
    if (flushTimer || flushing) return;
    flushTimer = setTimeout(() => {
      flushTimer = undefined;
      void runFlush();
    }, flushIntervalMs);
    flushTimer.unref();
  }
  const flush = async (): Promise<void> => {
    clearTimeout(flushTimer);
    flushTimer = undefined;
    await flushing;
    await runFlush();
  };

  async function killTree(
    tx: StoreTx,
    rootId: string,
    reason: instanceManager.RemovalReason,
    message: string,
    nowMs: number,
    onlyIfStaleBefore?: number,
  ): Promise<string[]> {
    const flipped = await tx.markDead(rootId, {
      reason,
      rootReason: reason,
      message,
      nowMs,
      ...(onlyIfStaleBefore !== undefined ? { onlyIfStaleBefore } : {}),
    });
    if (!flipped) return [];
    const killed: string[] = [];
    const emitRemoved = async (id: string, why: instanceManager.RemovalReason) => {
      const rec = await tx.getInstance(id);
      killed.push(id);
      await tx.appendEvent(removedEvent(id, rec?.type ?? 0, why, nowMs));
    };
    await emitRemoved(rootId, reason);
    const queue = [rootId];
    while (queue.length > 0) {
      const parentId = queue.shift()!;
      for (const childId of await tx.aliveChildIds(parentId)) {
        const died = await tx.markDead(childId, {
          reason: RemovalReason.REMOVAL_REASON_PARENT_DIED,
          rootReason: reason,
          message: `parent ${parentId} died`,
          nowMs,
        });
        if (died) {
          await emitRemoved(childId, RemovalReason.REMOVAL_REASON_PARENT_DIED);
          queue.push(childId);
        }
      }
    }
    return killed;
  }

  async function liveInTx(tx: StoreTx, id: string, nowMs: number): Promise<LiveLookup> {
    const stored = await tx.getInstance(id);
    if (!stored) return { message: `unknown instance ${id}`, status: HealthStatus.HEALTH_STATUS_UNKNOWN };
    if (!stored.alive) return { message: deathMessage(stored), status: deathStatus(stored) };
    const rec = current(stored);
    const cutoff = staleCutoff(nowMs);
    if (rec.lastHealthMs < cutoff) {
      await killTree(tx, id, RemovalReason.REMOVAL_REASON_STALE, `no health check for ${nowMs - rec.lastHealthMs} ms`, nowMs, cutoff);
      return {
        message: `instance ${id} is dead (stale: no health check for ${nowMs - rec.lastHealthMs} ms)`,
        status: HealthStatus.HEALTH_STATUS_STALE,
      };
    }
    return { record: rec, message: '', status: HealthStatus.HEALTH_STATUS_ALIVE };
  }

  const sweepNow = async (): Promise<string[]> => {
    let batch: HeartbeatBatch | undefined;
    let result: { killed: string[]; outage: Outage | undefined; missed: string[]; oldest: number };
    try {
      result = await transaction(async (tx) => {
        const nowMs = now();
        // Presence first: after a gap with no replica running, a new up period (grace) starts
        // before anything is judged stale.
        const seen = await tx.readPresence();
        const gap = !seen || nowMs - seen.seenMs > outageGapMs || (soleReplica && !swept);
        const periodStart = gap ? nowMs : seen.upSinceMs;
        await tx.writePresence({ upSinceMs: periodStart, seenMs: Math.max(nowMs, seen?.seenMs ?? 0) });
        upSince = periodStart;
        // The acknowledged checks first, so that staleness is judged on them.
        const written = await writeBeats(tx, batch);
        batch = written.batch;
        const cutoff = staleCutoff(nowMs);
        const died: string[] = [];
        for (const id of await tx.staleAliveIds(cutoff)) {
          // Acknowledged while this transaction ran (PostgreSQL awaits the database in between): not stale.
          if (beats.latest(id) >= cutoff) continue;
          died.push(...(await killTree(tx, id, RemovalReason.REMOVAL_REASON_STALE, `no health check for over ${stale} ms`, nowMs, cutoff)));
        }
        const found: Outage | undefined = gap ? { lastSeenMs: seen?.seenMs, upSinceMs: periodStart, graceUntilMs: periodStart + stale } : undefined;
        // This replica's first sweep learns which instances are alive (every live row: its cutoff
        // is the end of time), so that their health checks after a restart need no storage round trip.
        if (!swept) for (const id of await tx.staleAliveIds(Number.MAX_SAFE_INTEGER)) tx.noteAlive(id);
        // Rows inserted later start at their insertion time, which is after `nowMs`.
        const oldest = Math.min((await tx.oldestAliveHealthMs()) ?? nowMs, nowMs);
        return { killed: died, outage: found, missed: written.missed, oldest };
      });
    } catch (err) {
      if (batch) beats.failed(batch);
      throw err;
    }
    if (batch) beats.written(batch, result.missed);
    oldestBound = Math.max(oldestBound, result.oldest);
    swept = true;
    if (result.outage) options.onOutage?.(result.outage);
    return result.killed;
  };

  // One sweep at a time; a caller arriving while one runs gets the next one (which starts after its call).
  let sweeping: Promise<string[]> | undefined;
  let nextSweep: Promise<string[]> | undefined;
  const sweep = (): Promise<string[]> => {
    if (!sweeping) {
      sweeping = sweepNow().finally(() => {
        sweeping = undefined;
      });
      return sweeping;
    }
    nextSweep ??= sweeping
      .catch(() => undefined)
      .then(() => {
        nextSweep = undefined;
        return sweep();
      });
    return nextSweep;
  };

  const ensureSwept = async () => {
    if (oldestBound < staleCutoff(now())) await sweep();
  };

  /** The fast path: a known-alive instance while nothing is stale is recorded in memory. */
  const beatInMemory = (id: string, nowMs: number): boolean => {
    if (!beats.isKnownAlive(id) || oldestBound < staleCutoff(nowMs)) return false;
    beats.record(id, nowMs);
    scheduleFlush();
    return true;
  };

  async function healthCheck(id: string): Promise<HealthCheckResult> {
    const nowMs = now();
    if (beatInMemory(id, nowMs)) return ALIVE;
    if (oldestBound < staleCutoff(nowMs)) {
      // Some live instance may be stale (perhaps an ancestor): sweep first.
      await sweep();
      if (beatInMemory(id, nowMs)) return ALIVE;
    }
    // Slow path: not known here (first check since this replica started, or another replica
    // changed it), dead or stale. Learn which (and kill it if it is stale), in one transaction.
    return transaction(async (tx) => {
      const t = now();
      const live = await liveInTx(tx, id, t);
      if (!live.record) return { healthy: false, message: live.message, status: live.status };
      await tx.touch(id, t);
      tx.noteAlive(id);
      return ALIVE;
    });
  }

  return {
    staleTimeoutMs: stale,
    now,
    upSinceMs: () => upSince,
    staleCutoff,
    isLive,
    current,
    transaction,
    flush,
    forget: (id) => beats.forget(id),
    killTree,
    liveInTx,
    sweep,
    ensureSwept,
    healthCheck,
  };
}

import { instanceManager } from '@titancompute/protocol';
import { INSTANCE_MANAGER_DEFAULTS } from '../config.js';
import type { InstanceRecord, Store, StoreTx } from '../store/store.js';
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

/**
 * Who is alive: health checks, staleness judged within the registry's up period (the grace after
 * an outage), sweeps, and the cascade of a death to every descendant.
 */
export interface Liveness {
  readonly staleTimeoutMs: number;
  /** The store's clock. */
  now(): number;
  /** Start of the current up period as last read by this replica (unix ms). */
  upSinceMs(): number;
  /** Health checks older than this are stale at `nowMs` (time before the up period does not count). */
  staleCutoff(nowMs: number): number;
  /** Whether a record is alive and not stale right now. */
  isLive(record: InstanceRecord): boolean;
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
  let swept = false;
  // Until the first sweep reads the shared up period: grace from this replica's creation.
  let upSince = now();
  /**
   * Health checks older than this are stale at `nowMs`. Time before the current up period
   * does not count: an instance is stale only when max(last check, up since) is older than
   * the stale timeout.
   */
  const staleCutoff = (nowMs: number): number => {
    const cutoff = nowMs - stale;
    return upSince < cutoff ? cutoff : NOTHING_STALE;
  };
  const isLive = (r: InstanceRecord) => r.alive && r.lastHealthMs >= staleCutoff(now());

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
    const rec = await tx.getInstance(id);
    if (!rec) return { message: `unknown instance ${id}`, status: HealthStatus.HEALTH_STATUS_UNKNOWN };
    if (!rec.alive) return { message: deathMessage(rec), status: deathStatus(rec) };
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

  const sweep = async (): Promise<string[]> => {
    const { killed, outage } = await store.transaction(async (tx) => {
      const nowMs = now();
      // Presence first: after a gap with no replica running, a new up period (grace) starts
      // before anything is judged stale.
      const seen = await tx.readPresence();
      const gap = !seen || nowMs - seen.seenMs > outageGapMs || (soleReplica && !swept);
      const periodStart = gap ? nowMs : seen.upSinceMs;
      await tx.writePresence({ upSinceMs: periodStart, seenMs: Math.max(nowMs, seen?.seenMs ?? 0) });
      upSince = periodStart;
      const cutoff = staleCutoff(nowMs);
      const died: string[] = [];
      for (const id of await tx.staleAliveIds(cutoff)) {
        died.push(...(await killTree(tx, id, RemovalReason.REMOVAL_REASON_STALE, `no health check for over ${stale} ms`, nowMs, cutoff)));
      }
      const found: Outage | undefined = gap ? { lastSeenMs: seen?.seenMs, upSinceMs: periodStart, graceUntilMs: periodStart + stale } : undefined;
      return { killed: died, outage: found };
    });
    swept = true;
    if (outage) options.onOutage?.(outage);
    return killed;
  };

  const ensureSwept = async () => {
    if (await store.staleExists(staleCutoff(now()))) await sweep();
  };

  async function healthCheck(id: string): Promise<HealthCheckResult> {
    const nowMs = now();
    let outcome = await store.healthCheck(id, nowMs, staleCutoff(nowMs));
    if (outcome === 'sweep-needed') {
      await sweep();
      outcome = await store.healthCheck(id, nowMs, staleCutoff(nowMs));
    }
    if (outcome === 'ok') return { healthy: true, message: '', status: HealthStatus.HEALTH_STATUS_ALIVE };
    // Slow path: learn why (and kill it if it is stale), in one transaction.
    return store.transaction(async (tx) => {
      const t = now();
      const live = await liveInTx(tx, id, t);
      if (!live.record) return { healthy: false, message: live.message, status: live.status };
      await tx.touch(id, t);
      return { healthy: true, message: '', status: HealthStatus.HEALTH_STATUS_ALIVE };
    });
  }

  return {
    staleTimeoutMs: stale,
    now,
    upSinceMs: () => upSince,
    staleCutoff,
    isLive,
    killTree,
    liveInTx,
    sweep,
    ensureSwept,
    healthCheck,
  };
}

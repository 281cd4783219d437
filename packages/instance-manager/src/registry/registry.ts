import { instanceManager } from '@titancompute/protocol';
import { NotFoundError } from '../errors.js';
import type { InstanceRecord, Store, StoreTx } from '../store/store.js';

const { EventType, HealthStatus, RemovalReason } = instanceManager;

/** Cutoff that makes nothing stale (health timestamps are never negative). */
const NOTHING_STALE = Number.MIN_SAFE_INTEGER;

/** Most services one instance may register. */
export const MAX_SERVICES_PER_INSTANCE = 64;

/** Options of {@link createRegistry}. */
export interface RegistryOptions {
  /** An instance whose last health check is older than this is dead. */
  staleTimeoutMs: number;
  /** Clock (unix ms). Default `Date.now`. */
  now?: () => number;
  /**
   * A gap longer than this since the latest sweep of any replica means the registry was down
   * (every replica stopped, paused, or cut off from its database): the next sweep starts a new
   * up period, and every live instance gets a fresh grace period of one stale timeout from
   * then. Keep it above the sweep interval. Default 3000 ms.
   */
  outageGapMs?: number;
  /**
   * No other replica shares the storage (memory, SQLite), so this registry's first sweep always
   * starts a new up period, however short the restart was. With shared storage (PostgreSQL) a
   * replica that starts while another one sweeps joins its up period instead. Default: true
   * unless the store is PostgreSQL.
   */
  soleReplica?: boolean;
  /** Called when a sweep finds such a gap and starts a new up period. */
  onOutage?: (outage: Outage) => void;
}

/** A gap found in the registry's up time (see {@link RegistryOptions.outageGapMs}). */
export interface Outage {
  /** Latest sweep before the gap (unix ms); undefined on a database never swept before. */
  lastSeenMs: number | undefined;
  /** Start of the new up period (unix ms): a start, or the first sweep after the gap. */
  upSinceMs: number;
  /** No live instance goes stale before this (unix ms). */
  graceUntilMs: number;
}

/** Answer of {@link Registry.healthCheck}. */
export interface HealthCheckResult {
  healthy: boolean;
  message: string;
  /** ALIVE, or why not: UNKNOWN and STALE mean "register again", KILLED means "stop". */
  status: instanceManager.HealthStatus;
}

/** Criteria of {@link Registry.listLive} (GetAllInstances). */
export interface ListCriteria {
  type?: instanceManager.InstanceType;
  parentId?: string;
  serviceType?: instanceManager.ServiceType;
  healthyOnly?: boolean;
}

/** Result of a Try* call: `success=false` is control flow, not an error. */
export interface TryResult {
  success: boolean;
  message: string;
}

/**
 * The registry's rules, written once over {@link Store}: liveness (killed, stale, cascade),
 * parent-child links without cycles, services, and the events each change emits. Every
 * mutation is one store transaction.
 */
export interface Registry {
  readonly staleTimeoutMs: number;
  addInstance(instance: instanceManager.Instance): Promise<TryResult>;
  killInstance(id: string, reason: string): Promise<TryResult & { killedInstanceIds: string[] }>;
  healthCheck(id: string): Promise<HealthCheckResult>;
  addChild(parentId: string, childId: string): Promise<TryResult>;
  addService(id: string, service: instanceManager.Service): Promise<TryResult>;
  /**
   * Records that the registry is up (starting a new up period after a gap, see
   * {@link RegistryOptions.outageGapMs}), then kills every stale instance (and its
   * descendants); returns the ids that died. Run once before serving.
   */
  sweep(): Promise<string[]>;
  /** Start of the current up period as last read by this replica (unix ms). */
  upSinceMs(): number;
  /** Sweeps first when some live instance is stale, so reads never see one. */
  ensureSwept(): Promise<void>;
  /** The live instance, or {@link NotFoundError}. */
  getLive(id: string): Promise<InstanceRecord>;
  /** Live instances matching `criteria`, described. */
  listLive(criteria: ListCriteria): Promise<instanceManager.InstanceDescription[]>;
  /** Full description of a live record. */
  describe(record: InstanceRecord): Promise<instanceManager.InstanceDescription>;
  /** Live children of a live instance, described. */
  children(id: string): Promise<instanceManager.InstanceDescription[]>;
  /** Live parent of a live instance, described; undefined when it has none. */
  parent(id: string): Promise<instanceManager.InstanceDescription | undefined>;
  /** Whether a record is alive and not stale right now. */
  isLive(record: InstanceRecord): boolean;
  /** The store's clock. */
  now(): number;
}

const sameDescription = (r: InstanceRecord, i: instanceManager.Instance): boolean => {
  if (r.type !== i.type || r.hostname !== i.hostname || r.address !== i.address) return false;
  const a = Object.keys(r.metadata);
  const b = Object.keys(i.metadata);
  return a.length === b.length && a.every((k) => r.metadata[k] === i.metadata[k]);
};

const sameService = (a: instanceManager.Service, b: instanceManager.Service) => a.type === b.type && a.port === b.port && a.url === b.url;

/** What a dead record means for the instance: stop (a kill, or a kill's cascade) or register again. */
const deathStatus = (r: InstanceRecord): instanceManager.HealthStatus => {
  const root = r.removalReason === RemovalReason.REMOVAL_REASON_PARENT_DIED ? r.removalRootReason : r.removalReason;
  return root === RemovalReason.REMOVAL_REASON_KILLED ? HealthStatus.HEALTH_STATUS_KILLED : HealthStatus.HEALTH_STATUS_STALE;
};

const deathMessage = (r: InstanceRecord): string => {
  const why =
    r.removalReason === RemovalReason.REMOVAL_REASON_KILLED
      ? 'killed'
      : r.removalReason === RemovalReason.REMOVAL_REASON_STALE
        ? 'stale'
        : r.removalReason === RemovalReason.REMOVAL_REASON_PARENT_DIED
          ? 'its parent died'
          : 'dead';
  return `instance ${r.id} is dead (${why}${r.removalMessage ? `: ${r.removalMessage}` : ''})`;
};

/** Creates the {@link Registry} over a store. */
export function createRegistry(store: Store, options: RegistryOptions): Registry {
  const stale = options.staleTimeoutMs;
  const now = options.now ?? Date.now;
  const outageGapMs = options.outageGapMs ?? 3000;
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

  /** Kills `rootId` and every live descendant; emits one REMOVED per instance. */
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
      await tx.appendEvent({
        type: EventType.EVENT_TYPE_REMOVED,
        instanceId: id,
        instanceType: rec?.type ?? 0,
        relatedInstanceId: '',
        removalReason: why,
        timestampMs: nowMs,
      });
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

  /** Inside a transaction: the record if it is live; a stale one is killed on the spot. */
  async function liveInTx(
    tx: StoreTx,
    id: string,
    nowMs: number,
  ): Promise<{ record?: InstanceRecord; message: string; status: instanceManager.HealthStatus }> {
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

  const describeWith = (r: InstanceRecord, childIds: string[]): instanceManager.InstanceDescription => ({
    instance: { id: r.id, type: r.type, hostname: r.hostname, address: r.address, metadata: { ...r.metadata } },
    services: r.services.map((s) => ({ ...s })),
    parentId: r.parentId ?? '',
    childIds,
    healthy: true,
    lastHealthCheckMs: r.lastHealthMs,
    createdAtMs: r.createdAtMs,
  });

  const describe = async (r: InstanceRecord) =>
    describeWith(
      r,
      (await store.aliveChildren(r.id)).filter(isLive).map((c) => c.id),
    );

  const getLive = async (id: string): Promise<InstanceRecord> => {
    await ensureSwept();
    const rec = await store.getInstance(id);
    if (!rec || !isLive(rec)) {
      throw new NotFoundError(rec ? `${deathMessageOrStale(rec)}` : `unknown instance ${id}`, { kind: 'instance', id });
    }
    // Ancestors could have gone stale since the sweep above: check the chain.
    let parentId = rec.parentId;
    for (let depth = 0; parentId && depth < 10_000; depth++) {
      const p = await store.getInstance(parentId);
      if (!p || !isLive(p)) throw new NotFoundError(`instance ${id} is dead (its ancestor ${parentId} died)`, { kind: 'instance', id });
      parentId = p.parentId;
    }
    return rec;
  };

  const deathMessageOrStale = (r: InstanceRecord) => (r.alive ? `instance ${r.id} is dead (stale)` : deathMessage(r));

  return {
    staleTimeoutMs: stale,
    now,
    upSinceMs: () => upSince,
    isLive,
    sweep,
    ensureSwept,
    getLive,
    describe,

    addInstance: (instance) =>
      store.transaction(async (tx): Promise<TryResult> => {
        const nowMs = now();
        const existing = await tx.getInstance(instance.id);
        let reincarnated = false;
        if (existing) {
          const live = await liveInTx(tx, instance.id, nowMs);
          if (live.record) {
            if (!sameDescription(existing, instance)) {
              return { success: false, message: `instance ${instance.id} already exists with a different description` };
            }
            await tx.touch(instance.id, nowMs);
            return { success: true, message: `instance ${instance.id} already registered with this description` };
          }
          // The id belongs to a dead instance (killed or stale, its REMOVED already emitted):
          // this registration starts a new incarnation under the same id, like a restarted
          // process. It starts with no parent, children or services; the latest metrics stay
          // (with their timestamps) until new ones are posted.
          reincarnated = true;
        }
        await tx.insertInstance({
          id: instance.id,
          type: instance.type,
          hostname: instance.hostname,
          address: instance.address,
          metadata: { ...instance.metadata },
          services: [],
          parentId: null,
          alive: true,
          lastHealthMs: nowMs,
          createdAtMs: nowMs,
          diedAtMs: null,
          removalReason: null,
          removalMessage: null,
          removalRootReason: null,
        });
        await tx.appendEvent({
          type: EventType.EVENT_TYPE_ADDED,
          instanceId: instance.id,
          instanceType: instance.type,
          relatedInstanceId: '',
          instance: { ...instance, metadata: { ...instance.metadata } },
          removalReason: RemovalReason.REMOVAL_REASON_UNSPECIFIED,
          timestampMs: nowMs,
        });
        return { success: true, message: reincarnated ? 'registered again (the previous instance with this id is dead)' : 'registered' };
      }),

    killInstance: (id, reason) =>
      store.transaction(async (tx) => {
        const nowMs = now();
        const rec = await tx.getInstance(id);
        if (!rec) return { success: false, message: `unknown instance ${id}`, killedInstanceIds: [] };
        if (!rec.alive) return { success: false, message: deathMessage(rec), killedInstanceIds: [] };
        const killedInstanceIds = await killTree(tx, id, RemovalReason.REMOVAL_REASON_KILLED, reason || 'killed', nowMs);
        return { success: true, message: `killed ${killedInstanceIds.length} instance(s)`, killedInstanceIds };
      }),

    async healthCheck(id): Promise<HealthCheckResult> {
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
    },

    addChild: (parentId, childId) =>
      store.transaction(async (tx): Promise<TryResult> => {
        if (parentId === childId) return { success: false, message: 'an instance cannot be its own child' };
        const nowMs = now();
        const parent = await liveInTx(tx, parentId, nowMs);
        if (!parent.record) return { success: false, message: `parent: ${parent.message}` };
        const child = await liveInTx(tx, childId, nowMs);
        if (!child.record) return { success: false, message: `child: ${child.message}` };
        if (child.record.parentId === parentId) return { success: true, message: `${childId} is already a child of ${parentId}` };
        if (child.record.parentId) {
          return { success: false, message: `${childId} already has a parent (${child.record.parentId}); an instance has one parent` };
        }
        // Cycle: the child must not be the parent's ancestor.
        let cursor: string | null = parent.record.parentId;
        for (let depth = 0; cursor && depth < 10_000; depth++) {
          if (cursor === childId) return { success: false, message: `${childId} is an ancestor of ${parentId}: that link would make a cycle` };
          cursor = (await tx.getInstance(cursor))?.parentId ?? null;
        }
        await tx.setParent(childId, parentId);
        const base = { service: undefined, instance: undefined, removalReason: RemovalReason.REMOVAL_REASON_UNSPECIFIED, timestampMs: nowMs };
        await tx.appendEvent({ ...base, type: EventType.EVENT_TYPE_CHILD_ADDED, instanceId: parentId, instanceType: parent.record.type, relatedInstanceId: childId });
        await tx.appendEvent({ ...base, type: EventType.EVENT_TYPE_PARENT_ADDED, instanceId: childId, instanceType: child.record.type, relatedInstanceId: parentId });
        return { success: true, message: 'linked' };
      }),

    addService: (id, service) =>
      store.transaction(async (tx): Promise<TryResult> => {
        const nowMs = now();
        const live = await liveInTx(tx, id, nowMs);
        if (!live.record) return { success: false, message: live.message };
        const services = live.record.services;
        if (services.some((s) => sameService(s, service))) return { success: true, message: 'service already registered' };
        if (services.length >= MAX_SERVICES_PER_INSTANCE) {
          return { success: false, message: `instance ${id} already has ${MAX_SERVICES_PER_INSTANCE} services (the maximum)` };
        }
        const clean = { type: service.type, port: service.port, url: service.url };
        await tx.setServices(id, [...services, clean]);
        await tx.appendEvent({
          type: EventType.EVENT_TYPE_SERVICE_ADDED,
          instanceId: id,
          instanceType: live.record.type,
          relatedInstanceId: '',
          service: clean,
          removalReason: RemovalReason.REMOVAL_REASON_UNSPECIFIED,
          timestampMs: nowMs,
        });
        return { success: true, message: 'service registered' };
      }),

    async listLive(criteria) {
      await ensureSwept();
      const all = (await store.listAlive()).filter(isLive);
      const byId = new Map(all.map((r) => [r.id, r]));
      const liveChain = (r: InstanceRecord): boolean => {
        let p = r.parentId;
        for (let depth = 0; p && depth < 10_000; depth++) {
          const rec = byId.get(p);
          if (!rec) return false;
          p = rec.parentId;
        }
        return true;
      };
      const live = all.filter(liveChain);
      const children = new Map<string, string[]>();
      for (const r of live) {
        if (!r.parentId) continue;
        const list = children.get(r.parentId) ?? [];
        list.push(r.id);
        children.set(r.parentId, list);
      }
      const healthyCutoff = now() - stale / 2;
      return live
        .filter(
          (r) =>
            (!criteria.type || r.type === criteria.type) &&
            (!criteria.parentId || r.parentId === criteria.parentId) &&
            (!criteria.serviceType || r.services.some((s) => s.type === criteria.serviceType)) &&
            (!criteria.healthyOnly || r.lastHealthMs >= healthyCutoff),
        )
        .map((r) => describeWith(r, children.get(r.id) ?? []));
    },

    async children(id) {
      await getLive(id);
      const kids = (await store.aliveChildren(id)).filter(isLive);
      return Promise.all(kids.map(describe));
    },

    async parent(id) {
      const rec = await getLive(id);
      if (!rec.parentId) return undefined;
      const p = await store.getInstance(rec.parentId);
      return p && isLive(p) ? describe(p) : undefined;
    },
  };
}

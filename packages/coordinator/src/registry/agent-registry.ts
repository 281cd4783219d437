import type { AgentRegistration, HealthUpdate, JobOutcome, PrefixCacheReport } from '@titancompute/protocol';
import type { CircuitBreakerOptions } from '../scheduler/circuit-breaker.js';
import { AgentRecord, type Reservation } from './agent-record.js';
import type { SharedAgentView } from './fleet-store.js';

/** Why a reservation ended. */
export type ReleaseReason = 'started' | 'completed' | 'rejected' | 'expired' | 'deregistered' | 'evicted' | 'failed';

/** Every {@link ReleaseReason}, for metrics. */
export const RELEASE_REASONS: readonly ReleaseReason[] = ['started', 'completed', 'rejected', 'expired', 'deregistered', 'evicted', 'failed'];

/** Default claim window: how long a granted slot waits for its job to start. */
export const DEFAULT_CLAIM_WINDOW_MS = 10_000;

/** Options of {@link createAgentRegistry}. */
export interface AgentRegistryOptions {
  /** An agent silent for longer than this is evicted. */
  heartbeatTimeoutMs: number;
  /**
   * How long a reservation holds a slot unless the agent reports the job started (or rejected).
   * Default {@link DEFAULT_CLAIM_WINDOW_MS} (10 s).
   */
  claimWindowMs?: number;
  breaker?: CircuitBreakerOptions;
  /** Clock (ms). Default `Date.now`. */
  now?: () => number;
  /** Called for every finished job an agent reports. */
  onJobOutcome?: (record: AgentRecord, outcome: JobOutcome) => void;
  /** Called for every prefix-cache report an agent sends (`HealthUpdate.prefix_cache`, sent when its cache changed). */
  onPrefixCacheReport?: (record: AgentRecord, report: PrefixCacheReport) => void;
  /** Called for every reservation that ends, with why. */
  onReservationReleased?: (record: AgentRecord, jobId: string, reason: ReleaseReason) => void;
  /** Called when an agent is evicted. */
  onEvicted?: (record: AgentRecord) => void;
  /**
   * Whether the sweeper evicts agents silent for the heartbeat timeout. Default true; false with a
   * shared fleet, where the database decides (`last_seen_ms`, any replica) and every replica then
   * {@link AgentRegistry.evict}s the agent.
   */
  evictSilentAgents?: boolean;
}

/** What {@link AgentRegistry.applyHealth} found. */
export type HealthResult = { readonly known: false } | { readonly known: true; readonly record: AgentRecord; readonly deregistered: boolean };

/** Job errors that are not the agent's fault (the client went away, the agent was full) and do not trip the breaker. */
const NON_FAILURE_ERRORS = new Set(['cancelled', 'busy']);

/**
 * The agent registry: records by id, an index by model for the scheduler, reservations (the
 * only place they are written), started jobs, per-client holdings, breaker signals and
 * eviction of silent agents (the sweeper runs every ≤ 250 ms, so an agent is evicted within a
 * second of its heartbeat timeout).
 *
 * A granted job holds a **reservation** for the claim window. The agent reports the job in
 * `started_job_ids` (or `active_job_ids`) when it accepts it: the reservation ends and the job
 * is counted by the agent's own `running_jobs`/`queued_jobs` (the registry keeps its id only
 * for the per-client share) until the agent reports it in `completed_jobs` or stops listing it
 * in `active_job_ids`. `rejected_job_ids`, the claim window's end, deregistration and eviction
 * end a reservation too.
 */
export interface AgentRegistry {
  /** The claim window in use (ms). */
  readonly claimWindowMs: number;
  /** Registers (or re-registers) an agent; a re-registration keeps its breaker, history and reservations. */
  register(registration: AgentRegistration): AgentRecord;
  /**
   * Applies a health update sent on stream `streamId`: refreshes the record, turns the
   * reservations of jobs the agent reports started (or active) into started jobs, ends jobs it
   * reports completed (or no longer lists), frees the reservations of rejected jobs, and feeds
   * the breaker and the throughput average. `known: false` → the agent must register again.
   */
  applyHealth(update: HealthUpdate, streamId: number): HealthResult;
  /** The health stream `streamId` of an agent ended; the agent is offline at once. `dropped` counts as a breaker failure. */
  streamClosed(agentId: string, streamId: number, dropped: boolean): void;
  /** DeregisterAgent: no more traffic; the record goes at the next eviction. Returns false for an unknown agent. */
  deregister(agentId: string): boolean;
  /** Reserves a slot on an agent for `clientId`'s job for the claim window (from now). */
  reserve(record: AgentRecord, jobId: string, clientId: string): Reservation;
  /** Ends a reservation (e.g. the token could not be signed). False when there was none. */
  release(record: AgentRecord, jobId: string, reason: ReleaseReason): boolean;
  /** Drops the reservations whose claim window has ended (also done by the sweeper). */
  expireReservations(): void;
  /** Slots `clientId` holds over the fleet: its reservations plus its started jobs. */
  clientHeld(clientId: string): number;
  /** Reservations `clientId` holds over the fleet (not its started jobs). Kept by client: no walk over the fleet. */
  clientReserved(clientId: string): number;
  /** Earliest claim-window end among `clientId`'s reservations (local ms), undefined without any. Walks only that client's reservations. */
  clientEarliestExpiry(clientId: string): number | undefined;
  /**
   * Slots of the fleet: `max_jobs` summed over agents that can take work (online, registered, not
   * draining). Kept up to date as agents change: O(1).
   */
  fleetSlots(): number;
  /** Agents that list `model` among their supported models. */
  candidates(model: string): Iterable<AgentRecord>;
  /** Every record, offline ones included. */
  list(): AgentRecord[];
  get(agentId: string): AgentRecord | undefined;
  /** Number of records. */
  readonly size: number;
  /**
   * Calls `listener` after every change of a record the scheduler reads (registration, health,
   * reservations, breaker, going offline, deregistration, endpoint check), and with `removed`
   * when a record is evicted. Returns the unsubscribe function.
   */
  watch(listener: (record: AgentRecord, removed: boolean) => void): () => void;
  /** Reservations held over all agents. */
  reservedTotal(): number;
  /** Started jobs granted by this coordinator and not yet ended, over all agents. */
  startedTotal(): number;
  /** Evicts silent agents and drops expired reservations; returns the evicted records. */
  sweep(): AgentRecord[];
  /**
   * Takes an agent as another replica wrote it to the shared fleet (registration, health, state,
   * endpoint check, breaker, throughput, reservations over the cluster), creating its record when
   * new. This coordinator's own reservations and started jobs on it are kept.
   */
  applyShared(view: SharedAgentView): AgentRecord;
  /** Takes the cluster's reservation count of an agent at `version` (ignored when not newer). */
  applySharedLoad(agentId: string, reserved: number, version: number): void;
  /** Evicts an agent now (the shared fleet evicted it); false when unknown. */
  evict(agentId: string): boolean;
  /** Counts (`delta` 1) or uncounts (−1) a shared reservation in flight on `record` (see `AgentRecord.pendingShared`). */
  adjustPending(record: AgentRecord, delta: number): void;
  /** Starts the periodic sweeper (interval min(250 ms, timeout / 4)). */
  startSweeper(): void;
  /** Stops it. */
  stop(): void;
}

/**
 * Creates an {@link AgentRegistry}.
 *
 * @example
 * ```ts
 * const registry = createAgentRegistry({ heartbeatTimeoutMs: 30_000, claimWindowMs: 10_000 });
 * registry.startSweeper();
 * const record = registry.register(registration);
 * registry.reserve(record, jobId, 'client-1');
 * ```
 */
export function createAgentRegistry(options: AgentRegistryOptions): AgentRegistry {
  const now = options.now ?? Date.now;
  const claimWindowMs = options.claimWindowMs ?? DEFAULT_CLAIM_WINDOW_MS;
  const records = new Map<string, AgentRecord>();
  const byModel = new Map<string, Set<AgentRecord>>();
  /** Client id → slots held (reservations + started jobs). */
  const held = new Map<string, number>();
  /** Client id → its reservations (job id → reservation), in the order they were made. */
  const reservedByClient = new Map<string, Map<string, Reservation>>();
  /**
   * Every reservation in the order it was made, which is the order its claim window ends (one
   * window for all): expiring pops from the front instead of walking the fleet. Entries of
   * reservations that ended otherwise are skipped when they come up.
   */
  const expiryQueue: { record: AgentRecord; jobId: string; reservation: Reservation }[] = [];
  let expiryHead = 0;
  /** {@link AgentRegistry.fleetSlots}, kept up to date by {@link trackSlots}. */
  let fleetSlots = 0;
  let sweeper: NodeJS.Timeout | undefined;
  const listeners = new Set<(record: AgentRecord, removed: boolean) => void>();
  /** Tells the watchers that something the scheduler reads changed on `record`. */
  const changed = (record: AgentRecord) => {
    for (const listener of listeners) listener(record, false);
  };

  /** The slots a record adds to the fleet now. */
  const slotsOf = (record: AgentRecord) => (record.online && !record.deregistered && !record.draining ? record.maxJobs : 0);
  /** Runs `change` on a record (or removes it, `change` returning false) and keeps the fleet's slot count in step. */
  const trackSlots = <T>(record: AgentRecord, change: () => T, removed = false): T => {
    const before = slotsOf(record);
    const result = change();
    fleetSlots += (removed ? 0 : slotsOf(record)) - before;
    return result;
  };
  const addClientReservation = (clientId: string, jobId: string, reservation: Reservation) => {
    if (clientId === '') return;
    let mine = reservedByClient.get(clientId);
    if (!mine) reservedByClient.set(clientId, (mine = new Map()));
    mine.set(jobId, reservation);
  };
  const removeClientReservation = (clientId: string, jobId: string) => {
    const mine = reservedByClient.get(clientId);
    if (!mine?.delete(jobId)) return;
    if (mine.size === 0) reservedByClient.delete(clientId);
  };

  const reservationsOf = (record: AgentRecord) => record.reservations as Map<string, Reservation>;
  const startedOf = (record: AgentRecord) => record.startedJobs as Map<string, string>;
  const hold = (clientId: string, delta: number) => {
    if (clientId === '') return;
    const n = (held.get(clientId) ?? 0) + delta;
    if (n <= 0) held.delete(clientId);
    else held.set(clientId, n);
  };

  const index = (record: AgentRecord) => {
    for (const model of record.supportedModels) {
      let set = byModel.get(model);
      if (!set) byModel.set(model, (set = new Set()));
      set.add(record);
    }
  };
  const unindex = (record: AgentRecord) => {
    for (const model of record.supportedModels) {
      const set = byModel.get(model);
      set?.delete(record);
      if (set?.size === 0) byModel.delete(model);
    }
  };
  const release = (record: AgentRecord, jobId: string, reason: ReleaseReason): Reservation | undefined => {
    const reservation = record.reservations.get(jobId);
    if (!reservation) return undefined;
    reservationsOf(record).delete(jobId);
    removeClientReservation(reservation.clientId, jobId);
    hold(reservation.clientId, -1);
    changed(record);
    options.onReservationReleased?.(record, jobId, reason);
    return reservation;
  };
  /** The agent accepted the job: the reservation becomes a started job (held by the same client). */
  const markStarted = (record: AgentRecord, jobId: string) => {
    if (record.startedJobs.has(jobId)) return;
    const reservation = release(record, jobId, 'started');
    const clientId = reservation?.clientId ?? '';
    startedOf(record).set(jobId, clientId);
    hold(clientId, 1);
  };
  const markEnded = (record: AgentRecord, jobId: string) => {
    const clientId = record.startedJobs.get(jobId);
    if (clientId === undefined) return;
    startedOf(record).delete(jobId);
    hold(clientId, -1);
  };
  const clearJobs = (record: AgentRecord, reason: ReleaseReason) => {
    for (const jobId of [...record.reservations.keys()]) release(record, jobId, reason);
    for (const jobId of [...record.startedJobs.keys()]) markEnded(record, jobId);
  };
  /** Drops a record: its jobs end, watchers hear `removed`, `onEvicted` is called. */
  const evictRecord = (record: AgentRecord) => {
    clearJobs(record, 'evicted');
    trackSlots(record, () => records.delete(record.agentId), true);
    unindex(record);
    record.onSchedulingChange = undefined;
    for (const listener of listeners) listener(record, true);
    options.onEvicted?.(record);
  };
  const expire = (record: AgentRecord, t: number) => {
    if (record.reservations.size === 0) return;
    for (const [jobId, r] of record.reservations) if (r.expiresAtMs <= t) release(record, jobId, 'expired');
  };
  /** Ends the reservations at the front of the queue whose claim window has ended. */
  const expireQueued = (t: number) => {
    while (expiryHead < expiryQueue.length) {
      const entry = expiryQueue[expiryHead]!;
      if (entry.reservation.expiresAtMs > t) break;
      expiryHead += 1;
      // Still the same reservation (not ended, not replaced): its window is over.
      if (entry.record.reservations.get(entry.jobId) === entry.reservation) release(entry.record, entry.jobId, 'expired');
    }
    if (expiryHead > 1024 && expiryHead * 2 > expiryQueue.length) {
      expiryQueue.splice(0, expiryHead);
      expiryHead = 0;
    }
  };

  const registry: AgentRegistry = {
    claimWindowMs,
    register(registration) {
      const t = now();
      const existing = records.get(registration.agentId);
      if (existing) {
        unindex(existing);
        trackSlots(existing, () => existing.applyRegistration(registration, t));
        index(existing);
        changed(existing);
        return existing;
      }
      const record = new AgentRecord(registration, t, options.breaker ?? {}, now);
      records.set(record.agentId, record);
      fleetSlots += slotsOf(record);
      index(record);
      // The endpoint check is set from outside (the endpoint verifier): watchers hear of it too.
      record.onSchedulingChange = changed;
      changed(record);
      return record;
    },
    applyHealth(update, streamId) {
      const record = records.get(update.agentId);
      if (!record) return { known: false };
      if (record.deregistered) {
        record.lastHeartbeatMs = now();
        return { known: true, record, deregistered: true };
      }
      const t = now();
      trackSlots(record, () => record.applyHealth(update, t));
      record.streamId = streamId;
      // Order matters: a job may start and end between two updates (started + completed, not active).
      for (const jobId of update.startedJobIds) markStarted(record, jobId);
      for (const jobId of update.activeJobIds) markStarted(record, jobId);
      for (const jobId of update.rejectedJobIds) release(record, jobId, 'rejected');
      for (const outcome of update.completedJobs) {
        release(record, outcome.jobId, outcome.error === '' ? 'completed' : 'failed');
        markEnded(record, outcome.jobId);
        if (outcome.error === '') {
          record.breaker.recordSuccess(t);
          record.recordThroughput(outcome.tokensPerSecond);
        } else if (!NON_FAILURE_ERRORS.has(outcome.error)) {
          record.breaker.recordFailure(t);
        }
        options.onJobOutcome?.(record, outcome);
      }
      if (update.prefixCache) options.onPrefixCacheReport?.(record, update.prefixCache);
      // The agent lists every job it still has: one it no longer lists has ended.
      if (record.startedJobs.size > 0) {
        const active = new Set(update.activeJobIds);
        for (const jobId of [...record.startedJobs.keys()]) if (!active.has(jobId)) markEnded(record, jobId);
      }
      changed(record);
      return { known: true, record, deregistered: false };
    },
    streamClosed(agentId, streamId, dropped) {
      const record = records.get(agentId);
      if (!record || record.streamId !== streamId) return;
      trackSlots(record, () => (record.online = false));
      record.streamId = undefined;
      if (dropped && !record.deregistered && !record.draining) record.breaker.recordFailure(now());
      changed(record);
    },
    deregister(agentId) {
      const record = records.get(agentId);
      if (!record) return false;
      trackSlots(record, () => (record.deregistered = true));
      clearJobs(record, 'deregistered');
      changed(record);
      return true;
    },
    reserve(record, jobId, clientId) {
      const reservation: Reservation = { clientId, expiresAtMs: now() + claimWindowMs };
      const previous = record.reservations.get(jobId);
      if (previous) {
        hold(previous.clientId, -1);
        removeClientReservation(previous.clientId, jobId);
      }
      reservationsOf(record).set(jobId, reservation);
      addClientReservation(clientId, jobId, reservation);
      expiryQueue.push({ record, jobId, reservation });
      hold(clientId, 1);
      changed(record);
      return reservation;
    },
    release(record, jobId, reason) {
      return release(record, jobId, reason) !== undefined;
    },
    expireReservations() {
      expireQueued(now());
    },
    clientHeld(clientId) {
      return held.get(clientId) ?? 0;
    },
    clientReserved(clientId) {
      return reservedByClient.get(clientId)?.size ?? 0;
    },
    clientEarliestExpiry(clientId) {
      let min: number | undefined;
      for (const r of reservedByClient.get(clientId)?.values() ?? []) if (min === undefined || r.expiresAtMs < min) min = r.expiresAtMs;
      return min;
    },
    fleetSlots() {
      return fleetSlots;
    },
    candidates(model) {
      return byModel.get(model) ?? [];
    },
    list() {
      return [...records.values()];
    },
    get(agentId) {
      return records.get(agentId);
    },
    get size() {
      return records.size;
    },
    watch(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
    reservedTotal() {
      let n = 0;
      for (const r of records.values()) n += r.reservations.size;
      return n;
    },
    startedTotal() {
      let n = 0;
      for (const r of records.values()) n += r.startedJobs.size;
      return n;
    },
    sweep() {
      const t = now();
      expireQueued(t);
      const evicted: AgentRecord[] = [];
      // The full walk also ends windows the queue has not reached (only if the clock went back).
      const evictSilent = options.evictSilentAgents ?? true;
      for (const record of records.values()) {
        if (evictSilent && t - record.lastHeartbeatMs > options.heartbeatTimeoutMs) {
          evicted.push(record);
          continue;
        }
        expire(record, t);
      }
      for (const record of evicted) evictRecord(record);
      return evicted;
    },
    applyShared(view) {
      const snap = view.snapshot;
      const registration: AgentRegistration = { ...snap.registration, agentId: view.agentId, agentCredential: '' };
      let record = records.get(view.agentId);
      // This replica's own finished check of the same endpoint, before the snapshot is applied.
      const verifiedHere = record !== undefined && record.endpointCheck === 'verified' ? record.endpoint : undefined;
      if (record) {
        unindex(record);
      } else {
        record = new AgentRecord(registration, now(), options.breaker ?? {}, now);
        records.set(record.agentId, record);
        fleetSlots += slotsOf(record);
      }
      const r = record;
      trackSlots(r, () => {
        r.applyRegistration(registration, view.lastSeenMs);
        r.applyLoad(snap.health);
        r.online = snap.online;
        r.deregistered = snap.deregistered;
        r.draining = snap.draining;
      });
      r.breaker.restore(snap.breaker);
      r.tokensPerSecond = snap.tokensPerSecond ?? undefined;
      r.homeReplica = view.homeReplica ?? undefined;
      r.applySharedLoad(view.reserved, view.loadVersion);
      r.onSchedulingChange = undefined;
      // 'pending' only says that whoever wrote the snapshot had not finished a check then (it may be
      // this replica's own registration, read back after its check passed): it never undoes a
      // verification of the same endpoint. A new endpoint, or 'unreachable', does.
      r.endpointCheck = snap.endpointCheck === 'pending' && verifiedHere === r.endpoint ? 'verified' : snap.endpointCheck;
      r.onSchedulingChange = changed;
      index(r);
      changed(r);
      return r;
    },
    applySharedLoad(agentId, reserved, version) {
      const record = records.get(agentId);
      if (record?.applySharedLoad(reserved, version)) changed(record);
    },
    adjustPending(record, delta) {
      record.pendingShared = Math.max(0, record.pendingShared + delta);
      changed(record);
    },
    evict(agentId) {
      const record = records.get(agentId);
      if (!record) return false;
      evictRecord(record);
      return true;
    },
    startSweeper() {
      if (sweeper) return;
      const interval = Math.max(10, Math.min(250, Math.floor(options.heartbeatTimeoutMs / 4)));
      sweeper = setInterval(() => registry.sweep(), interval);
      sweeper.unref();
    },
    stop() {
      if (sweeper) clearInterval(sweeper);
      sweeper = undefined;
    },
  };
  return registry;
}

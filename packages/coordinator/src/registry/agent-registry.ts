import type { AgentRegistration, HealthUpdate, JobOutcome } from '@titancompute/protocol';
import type { CircuitBreakerOptions } from '../scheduler/circuit-breaker.js';
import { AgentRecord, type Reservation } from './agent-record.js';

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
  /** Called for every reservation that ends, with why. */
  onReservationReleased?: (record: AgentRecord, jobId: string, reason: ReleaseReason) => void;
  /** Called when an agent is evicted. */
  onEvicted?: (record: AgentRecord) => void;
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
  /** Earliest claim-window end among `clientId`'s reservations (local ms), undefined without any. */
  clientEarliestExpiry(clientId: string): number | undefined;
  /** Slots of the fleet: `max_jobs` summed over agents that can take work (online, registered, not draining). */
  fleetSlots(): number;
  /** Agents that list `model` among their supported models. */
  candidates(model: string): Iterable<AgentRecord>;
  /** Every record, offline ones included. */
  list(): AgentRecord[];
  get(agentId: string): AgentRecord | undefined;
  /** Number of records. */
  readonly size: number;
  /** Reservations held over all agents. */
  reservedTotal(): number;
  /** Started jobs granted by this coordinator and not yet ended, over all agents. */
  startedTotal(): number;
  /** Evicts silent agents and drops expired reservations; returns the evicted records. */
  sweep(): AgentRecord[];
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
  let sweeper: NodeJS.Timeout | undefined;

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
    hold(reservation.clientId, -1);
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
  const expire = (record: AgentRecord, t: number) => {
    if (record.reservations.size === 0) return;
    for (const [jobId, r] of record.reservations) if (r.expiresAtMs <= t) release(record, jobId, 'expired');
  };

  const registry: AgentRegistry = {
    claimWindowMs,
    register(registration) {
      const t = now();
      const existing = records.get(registration.agentId);
      if (existing) {
        unindex(existing);
        existing.applyRegistration(registration, t);
        index(existing);
        return existing;
      }
      const record = new AgentRecord(registration, t, options.breaker ?? {}, now);
      records.set(record.agentId, record);
      index(record);
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
      record.applyHealth(update, t);
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
      // The agent lists every job it still has: one it no longer lists has ended.
      if (record.startedJobs.size > 0) {
        const active = new Set(update.activeJobIds);
        for (const jobId of [...record.startedJobs.keys()]) if (!active.has(jobId)) markEnded(record, jobId);
      }
      return { known: true, record, deregistered: false };
    },
    streamClosed(agentId, streamId, dropped) {
      const record = records.get(agentId);
      if (!record || record.streamId !== streamId) return;
      record.online = false;
      record.streamId = undefined;
      if (dropped && !record.deregistered && !record.draining) record.breaker.recordFailure(now());
    },
    deregister(agentId) {
      const record = records.get(agentId);
      if (!record) return false;
      record.deregistered = true;
      clearJobs(record, 'deregistered');
      return true;
    },
    reserve(record, jobId, clientId) {
      const reservation: Reservation = { clientId, expiresAtMs: now() + claimWindowMs };
      const previous = record.reservations.get(jobId);
      if (previous) hold(previous.clientId, -1);
      reservationsOf(record).set(jobId, reservation);
      hold(clientId, 1);
      return reservation;
    },
    release(record, jobId, reason) {
      return release(record, jobId, reason) !== undefined;
    },
    expireReservations() {
      const t = now();
      for (const record of records.values()) expire(record, t);
    },
    clientHeld(clientId) {
      return held.get(clientId) ?? 0;
    },
    clientEarliestExpiry(clientId) {
      let min: number | undefined;
      for (const record of records.values()) {
        for (const r of record.reservations.values()) if (r.clientId === clientId && (min === undefined || r.expiresAtMs < min)) min = r.expiresAtMs;
      }
      return min;
    },
    fleetSlots() {
      let n = 0;
      for (const r of records.values()) if (r.online && !r.deregistered && !r.draining) n += r.maxJobs;
      return n;
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
      const evicted: AgentRecord[] = [];
      for (const record of records.values()) {
        if (t - record.lastHeartbeatMs > options.heartbeatTimeoutMs) {
          evicted.push(record);
          continue;
        }
        expire(record, t);
      }
      for (const record of evicted) {
        clearJobs(record, 'evicted');
        records.delete(record.agentId);
        unindex(record);
        options.onEvicted?.(record);
      }
      return evicted;
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

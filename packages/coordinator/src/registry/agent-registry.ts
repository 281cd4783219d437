import type { AgentRegistration, HealthUpdate, JobOutcome } from '@titancompute/protocol';
import type { CircuitBreakerOptions } from '../scheduler/circuit-breaker.js';
import { AgentRecord } from './agent-record.js';

/** Options of {@link createAgentRegistry}. */
export interface AgentRegistryOptions {
  /** An agent silent for longer than this is evicted. */
  heartbeatTimeoutMs: number;
  breaker?: CircuitBreakerOptions;
  /** Clock (ms). Default `Date.now`. */
  now?: () => number;
  /** Called for every finished job an agent reports. */
  onJobOutcome?: (record: AgentRecord, outcome: JobOutcome) => void;
  /** Called when an agent is evicted. */
  onEvicted?: (record: AgentRecord) => void;
}

/** What {@link AgentRegistry.applyHealth} found. */
export type HealthResult = { readonly known: false } | { readonly known: true; readonly record: AgentRecord; readonly deregistered: boolean };

/** Job errors that are not the agent's fault (the client went away) and do not trip the breaker. */
const NON_FAILURE_ERRORS = new Set(['cancelled']);

/**
 * The agent registry: records by id, an index by model for the scheduler, reservations,
 * breaker signals and eviction of silent agents (the sweeper runs every ≤ 250 ms, so an agent
 * is evicted within a second of its heartbeat timeout).
 */
export interface AgentRegistry {
  /** Registers (or re-registers) an agent; a re-registration keeps its breaker, history and reservations. */
  register(registration: AgentRegistration): AgentRecord;
  /**
   * Applies a health update sent on stream `streamId`: refreshes the record, releases the
   * reservations of jobs the agent now reports (active or completed) and feeds the breaker
   * and the throughput average. `known: false` → the agent must register again.
   */
  applyHealth(update: HealthUpdate, streamId: number): HealthResult;
  /** The health stream `streamId` of an agent ended; the agent is offline at once. `dropped` counts as a breaker failure. */
  streamClosed(agentId: string, streamId: number, dropped: boolean): void;
  /** DeregisterAgent: no more traffic; the record goes at the next eviction. Returns false for an unknown agent. */
  deregister(agentId: string): boolean;
  /** Reserves a slot on an agent for a job until `expiresAtMs` (or until the agent reports the job). */
  reserve(record: AgentRecord, jobId: string, expiresAtMs: number): void;
  /** Agents that list `model` among their supported models. */
  candidates(model: string): Iterable<AgentRecord>;
  /** Every record, offline ones included. */
  list(): AgentRecord[];
  get(agentId: string): AgentRecord | undefined;
  /** Number of records. */
  readonly size: number;
  /** Reservations held over all agents. */
  reservedTotal(): number;
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
 * const registry = createAgentRegistry({ heartbeatTimeoutMs: 30_000 });
 * registry.startSweeper();
 * const record = registry.register(registration);
 * ```
 */
export function createAgentRegistry(options: AgentRegistryOptions): AgentRegistry {
  const now = options.now ?? Date.now;
  const records = new Map<string, AgentRecord>();
  const byModel = new Map<string, Set<AgentRecord>>();
  let sweeper: NodeJS.Timeout | undefined;

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
  const releaseFor = (record: AgentRecord, jobId: string) => {
    record.reservations.delete(jobId);
  };

  const registry: AgentRegistry = {
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
      for (const jobId of update.activeJobIds) releaseFor(record, jobId);
      for (const outcome of update.completedJobs) {
        releaseFor(record, outcome.jobId);
        if (outcome.error === '') {
          record.breaker.recordSuccess(t);
          record.recordThroughput(outcome.tokensPerSecond);
        } else if (!NON_FAILURE_ERRORS.has(outcome.error)) {
          record.breaker.recordFailure(t);
        }
        options.onJobOutcome?.(record, outcome);
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
      record.reservations.clear();
      return true;
    },
    reserve(record, jobId, expiresAtMs) {
      record.reservations.set(jobId, expiresAtMs);
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
    sweep() {
      const t = now();
      const evicted: AgentRecord[] = [];
      for (const record of records.values()) {
        if (t - record.lastHeartbeatMs > options.heartbeatTimeoutMs) {
          evicted.push(record);
          continue;
        }
        for (const [jobId, expiresAt] of record.reservations) if (expiresAt <= t) record.reservations.delete(jobId);
      }
      for (const record of evicted) {
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

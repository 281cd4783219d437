import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { CoordinatorMetrics } from '@titancompute/protocol';
import { AGENT_STATES } from './registry/agent-record.js';
import { RELEASE_REASONS, type AgentRegistry, type ReleaseReason } from './registry/agent-registry.js';

/**
 * Outcomes of a scheduling decision; `unauthenticated` (API key missing or refused), `forbidden`
 * (model not allowed for the key) and `quota` (a key's limit) come from API-key checks.
 */
export type DecisionOutcome = 'scheduled' | 'no_agent' | 'busy' | 'client_limit' | 'invalid' | 'error' | 'unauthenticated' | 'forbidden' | 'quota';

/** Every {@link DecisionOutcome}, for metrics. */
export const DECISION_OUTCOMES: readonly DecisionOutcome[] = [
  'scheduled',
  'no_agent',
  'busy',
  'client_limit',
  'invalid',
  'error',
  'unauthenticated',
  'forbidden',
  'quota',
];

/** The coordinator's metrics: Prometheus (`/metrics`) and the counters of QuerySystemStatus. */
export interface CoordinatorMetricsSink {
  /** Prometheus registry (one per coordinator, so several can run in a process). */
  readonly prometheus: Registry;
  request(transport: 'grpc' | 'http'): void;
  decision(outcome: DecisionOutcome, latencyMs?: number): void;
  /**
   * A job an agent reported finished, by its `error`: "" completed, "cancelled" (the client
   * went away or aborted) cancelled — not a failure —, anything else failed.
   */
  jobFinished(error: string): void;
  /** A reservation ended (see {@link ReleaseReason}). */
  reservationReleased(reason: ReleaseReason): void;
  /** Jobs scheduled since start. */
  scheduledTotal(): number;
  /** The CoordinatorMetrics message. */
  snapshot(): CoordinatorMetrics;
}

const LATENCY_SAMPLES = 2048;

/**
 * Creates the metrics: `titan_coordinator_requests_total{transport}`,
 * `titan_coordinator_scheduling_decisions_total{outcome}`, `titan_coordinator_agents{state}`,
 * `titan_coordinator_reserved_jobs`, `titan_coordinator_started_jobs`,
 * `titan_coordinator_reservations_released_total{reason}`,
 * `titan_coordinator_jobs_finished_total{result=completed|failed|cancelled}` and the histogram `titan_coordinator_scheduling_latency_seconds`.
 */
export function createCoordinatorMetrics(registry: AgentRegistry): CoordinatorMetricsSink {
  const prometheus = new Registry();
  const requests = new Counter({
    name: 'titan_coordinator_requests_total',
    help: 'Inference requests received.',
    labelNames: ['transport'],
    registers: [prometheus],
  });
  const decisions = new Counter({
    name: 'titan_coordinator_scheduling_decisions_total',
    help: 'Scheduling decisions by outcome.',
    labelNames: ['outcome'],
    registers: [prometheus],
  });
  const latency = new Histogram({
    name: 'titan_coordinator_scheduling_latency_seconds',
    help: 'Time to choose an agent and sign the session token.',
    buckets: [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1],
    registers: [prometheus],
  });
  const finished = new Counter({
    name: 'titan_coordinator_jobs_finished_total',
    help: 'Jobs agents reported finished, by result.',
    labelNames: ['result'],
    registers: [prometheus],
  });
  new Gauge({
    name: 'titan_coordinator_agents',
    help: 'Registered agents by state.',
    labelNames: ['state'],
    registers: [prometheus],
    collect() {
      const counts = new Map<string, number>(AGENT_STATES.map((s) => [s, 0]));
      for (const r of registry.list()) counts.set(r.state(), (counts.get(r.state()) ?? 0) + 1);
      for (const [state, n] of counts) this.set({ state }, n);
    },
  });
  new Gauge({
    name: 'titan_coordinator_reserved_jobs',
    help: 'Slots reserved for jobs handed out and not yet reported by their agent.',
    registers: [prometheus],
    collect() {
      this.set(registry.reservedTotal());
    },
  });
  new Gauge({
    name: 'titan_coordinator_started_jobs',
    help: 'Jobs granted here that agents reported started and not yet ended.',
    registers: [prometheus],
    collect() {
      this.set(registry.startedTotal());
    },
  });
  const released = new Counter({
    name: 'titan_coordinator_reservations_released_total',
    help: 'Reservations ended, by reason (started, completed, rejected, expired, deregistered, evicted, failed).',
    labelNames: ['reason'],
    registers: [prometheus],
  });
  for (const reason of RELEASE_REASONS) released.inc({ reason }, 0);
  // Labelled children bound once: inc() on a child skips hashing the labels on every call.
  const decisionCounters = new Map(DECISION_OUTCOMES.map((outcome) => [outcome, decisions.labels({ outcome })]));
  for (const counter of decisionCounters.values()) counter.inc(0);
  const requestCounters = { grpc: requests.labels({ transport: 'grpc' }), http: requests.labels({ transport: 'http' }) };
  const releasedCounters = new Map(RELEASE_REASONS.map((reason) => [reason, released.labels({ reason })]));

  const counts = { requests: 0, scheduled: 0, noAgent: 0, busy: 0, invalid: 0, completed: 0, failed: 0, cancelled: 0 };
  const samples = new Float64Array(LATENCY_SAMPLES);
  let sampleCount = 0;

  const percentile = (p: number): number => {
    const n = Math.min(sampleCount, LATENCY_SAMPLES);
    if (n === 0) return 0;
    const sorted = Array.from(samples.subarray(0, n)).sort((a, b) => a - b);
    return sorted[Math.min(n - 1, Math.floor(p * n))] ?? 0;
  };

  return {
    prometheus,
    request(transport) {
      counts.requests += 1;
      requestCounters[transport].inc();
    },
    decision(outcome, latencyMs) {
      decisionCounters.get(outcome)!.inc();
      if (outcome === 'scheduled') counts.scheduled += 1;
      else if (outcome === 'no_agent') counts.noAgent += 1;
      else if (outcome === 'busy' || outcome === 'client_limit') counts.busy += 1;
      else if (outcome === 'invalid') counts.invalid += 1;
      if (latencyMs !== undefined) {
        latency.observe(latencyMs / 1000);
        samples[sampleCount % LATENCY_SAMPLES] = latencyMs;
        sampleCount += 1;
      }
    },
    jobFinished(error) {
      const result = error === '' ? 'completed' : error === 'cancelled' ? 'cancelled' : 'failed';
      counts[result] += 1;
      finished.inc({ result });
    },
    reservationReleased(reason) {
      releasedCounters.get(reason)!.inc();
    },
    scheduledTotal: () => counts.scheduled,
    snapshot: () => ({
      requestsTotal: counts.requests,
      scheduledTotal: counts.scheduled,
      rejectedNoAgentTotal: counts.noAgent,
      rejectedBusyTotal: counts.busy,
      rejectedInvalidTotal: counts.invalid,
      jobsCompletedTotal: counts.completed,
      jobsFailedTotal: counts.failed,
      reservedJobs: registry.reservedTotal(),
      schedulingLatencyP50Ms: percentile(0.5),
      schedulingLatencyP99Ms: percentile(0.99),
    }),
  };
}

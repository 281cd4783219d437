import type { AgentRegistration, GpuInfo, HealthUpdate } from '@titancompute/protocol';
import { CircuitBreaker, type BreakerState, type CircuitBreakerOptions } from '../scheduler/circuit-breaker.js';
import { isCpuOnly, type SchedulableAgent } from '../scheduler/scheduler.js';

/**
 * An agent's state as reported by QuerySystemStatus and the REST API. `unverified`: registered,
 * but the coordinator has not (yet) reached its endpoint; never scheduled.
 */
export type AgentState = 'healthy' | 'degraded' | 'half-open' | 'draining' | 'offline' | 'unverified';

/** Every agent state, for metrics. */
export const AGENT_STATES: readonly AgentState[] = ['healthy', 'degraded', 'half-open', 'draining', 'offline', 'unverified'];

/** Whether the coordinator reached an agent's endpoint (see the endpoint verifier); only `verified` agents are scheduled. */
export type EndpointCheck = 'verified' | 'pending' | 'unreachable';

/** Free memory below this (MB) makes an agent degraded (v1's rule). */
const LOW_MEMORY_MB = 512;
/** Used fraction above this makes an agent degraded. */
const HIGH_USAGE = 0.9;
/** CPU percent above this makes an agent degraded. */
const HIGH_CPU = 90;
/** Weight of the newest sample in the tokens/s moving average. */
const TPS_ALPHA = 0.3;

/** A slot held for a granted job the agent has not reported yet. */
export interface Reservation {
  /** The client the job was granted to (per-client share). */
  readonly clientId: string;
  /** Local time (ms) the claim window ends; the slot is freed then if the job never started. */
  readonly expiresAtMs: number;
}

/**
 * Everything the coordinator knows about one agent: its registration, its latest health
 * update, the reservations it holds, its circuit breaker and its performance history. It is
 * a {@link SchedulableAgent}, so the scheduler reads it without copying.
 */
export class AgentRecord implements SchedulableAgent {
  agentId: string;
  endpoint = '';
  /** `host:port` of the agent's HTTP server (OpenAI-compatible `/v1/*`); empty when it has none. */
  httpEndpoint = '';
  supportedModels: ReadonlySet<string> = new Set();
  maxJobs = 0;
  maxQueue = 0;
  totalVramMb = 0;
  totalRamMb = 0;
  engine = '';
  capabilities: Record<string, string> = {};
  gpus: GpuInfo[] = [];

  freeVramMb = 0;
  freeRamMb = 0;
  runningJobs = 0;
  queuedJobs = 0;
  cpuPercent = 0;
  rttMs = 0;
  draining = false;
  tokensPerSecond: number | undefined;

  /** Local time (ms) of the registration or last health update. */
  lastHeartbeatMs: number;
  /** False once its health stream closed (until a new stream speaks for it). */
  online = true;
  /** True after DeregisterAgent: never scheduled, evicted after the heartbeat timeout. */
  deregistered = false;
  /** Id of the health stream currently speaking for this agent. */
  streamId: number | undefined;
  private endpointCheckValue: EndpointCheck = 'verified';
  /**
   * Called when the endpoint check changes (the one thing the scheduler reads that is written
   * outside the registry); set by the registry, which tells its watchers (the candidate index).
   */
  onSchedulingChange: ((record: AgentRecord) => void) | undefined;
  /**
   * Job id → reservation (claim window). Written only by the registry: a job leaves it when the
   * agent reports it started, ended or rejected, or when its claim window ends.
   */
  readonly reservations: ReadonlyMap<string, Reservation> = new Map<string, Reservation>();
  /**
   * Job id → client id of jobs granted here that the agent reported started and not yet ended.
   * Bookkeeping for the per-client share only: the slots they use are already in the agent's
   * own `runningJobs`/`queuedJobs`, so the scheduler never adds them again.
   */
  readonly startedJobs: ReadonlyMap<string, string> = new Map<string, string>();
  readonly breaker: CircuitBreaker;
  /**
   * With a shared fleet (PostgreSQL): the reservations every replica holds on this agent, as the
   * database last said (`fleet_load.reserved`), and that row's version; undefined on a single node
   * (then {@link reservedJobs} counts this coordinator's own {@link reservations}).
   */
  sharedReserved: number | undefined;
  /** Version of `fleet_load` behind {@link sharedReserved} (a stale read never overwrites a newer one). */
  sharedLoadVersion = -1;
  /**
   * With a shared fleet: reservations this replica is taking on this agent right now (awaiting the
   * database), counted as reserved meanwhile so that concurrent requests spread over the fleet.
   */
  pendingShared = 0;
  /** With a shared fleet: the replica its health stream is homed on (undefined: none, or a single node). */
  homeReplica: string | undefined;

  constructor(
    registration: AgentRegistration,
    nowMs: number,
    breakerOptions: CircuitBreakerOptions,
    private readonly clock: () => number,
  ) {
    this.agentId = registration.agentId;
    this.lastHeartbeatMs = nowMs;
    this.breaker = new CircuitBreaker(breakerOptions);
    this.applyRegistration(registration, nowMs);
  }

  /**
   * Set by the coordinator service's endpoint verifier: `pending` while it dials a new or changed
   * endpoint, `unreachable` when that failed. Only `verified` agents are scheduled. Default
   * `verified` (records built outside the service, e.g. in simulations).
   */
  get endpointCheck(): EndpointCheck {
    return this.endpointCheckValue;
  }

  set endpointCheck(value: EndpointCheck) {
    if (value === this.endpointCheckValue) return;
    this.endpointCheckValue = value;
    this.onSchedulingChange?.(this);
  }

  /** Takes a (re-)registration: capacity, models and endpoint; memory is assumed free until the first update. */
  applyRegistration(reg: AgentRegistration, nowMs: number): void {
    this.endpoint = reg.endpoint;
    this.httpEndpoint = reg.httpEndpoint;
    this.supportedModels = new Set(reg.supportedModels);
    this.maxJobs = reg.maxJobs;
    this.maxQueue = reg.maxQueue;
    this.totalVramMb = reg.totalVramMb;
    this.totalRamMb = reg.totalRamMb;
    this.engine = reg.engine;
    this.capabilities = { ...reg.capabilities };
    this.gpus = reg.gpus;
    this.freeVramMb = reg.totalVramMb;
    this.freeRamMb = reg.totalRamMb;
    this.lastHeartbeatMs = nowMs;
    this.online = true;
    this.deregistered = false;
    this.draining = false;
  }

  /** Takes a health update (not its job lists; see the registry). */
  applyHealth(update: HealthUpdate, nowMs: number): void {
    this.applyLoad(update);
    this.draining = update.draining;
    this.lastHeartbeatMs = nowMs;
    this.online = true;
  }

  /**
   * Takes the load an agent reported (from its health update, or another replica's snapshot of
   * it): memory, jobs, CPU, RTT and GPUs. A report without total RAM or GPUs keeps the known ones.
   */
  applyLoad(load: Pick<HealthUpdate, 'freeVramMb' | 'freeRamMb' | 'totalRamMb' | 'runningJobs' | 'queuedJobs' | 'cpuPercent' | 'rttMs' | 'gpus'>): void {
    this.freeVramMb = load.freeVramMb;
    this.freeRamMb = load.freeRamMb;
    if (load.totalRamMb > 0) this.totalRamMb = load.totalRamMb;
    this.runningJobs = load.runningJobs;
    this.queuedJobs = load.queuedJobs;
    this.cpuPercent = load.cpuPercent;
    this.rttMs = Number.isFinite(load.rttMs) && load.rttMs >= 0 ? load.rttMs : 0;
    if (load.gpus.length > 0) this.gpus = load.gpus;
  }

  /** Folds a finished job's tokens/s into the moving average. */
  recordThroughput(tokensPerSecond: number): void {
    if (!(tokensPerSecond > 0) || !Number.isFinite(tokensPerSecond)) return;
    this.tokensPerSecond = this.tokensPerSecond === undefined ? tokensPerSecond : TPS_ALPHA * tokensPerSecond + (1 - TPS_ALPHA) * this.tokensPerSecond;
  }

  /** Reserved slots (granted, not yet reported by the agent): the cluster's with a shared fleet, else this coordinator's. */
  get reservedJobs(): number {
    return (this.sharedReserved ?? this.reservations.size) + this.pendingShared;
  }

  /** Takes the shared reservation count of `fleet_load` at `version`; false (and nothing changes) when an equal or newer one was taken. */
  applySharedLoad(reserved: number, version: number): boolean {
    if (version <= this.sharedLoadVersion) return false;
    this.sharedLoadVersion = version;
    this.sharedReserved = reserved;
    return true;
  }

  /** Earliest claim-window end among its reservations (local ms), or undefined without any. */
  earliestReservationExpiry(): number | undefined {
    let min: number | undefined;
    for (const r of this.reservations.values()) if (min === undefined || r.expiresAtMs < min) min = r.expiresAtMs;
    return min;
  }

  /** Schedulable at all: online, registered, not draining, breaker not open. */
  get available(): boolean {
    return (
      this.online && !this.deregistered && !this.draining && this.endpointCheck === 'verified' && (this.breaker.closed || this.breaker.allows(this.clock()))
    );
  }

  /** Degraded or probing (half-open): scored lower. */
  get penalized(): boolean {
    return this.isDegraded() || (!this.breaker.closed && this.breaker.state(this.clock()) === 'half-open');
  }

  /** v1's degraded rule, judged on VRAM for GPU agents and on RAM for CPU-only agents. */
  isDegraded(): boolean {
    if (this.cpuPercent > HIGH_CPU) return true;
    const cpuOnly = isCpuOnly(this);
    const total = cpuOnly ? this.totalRamMb : this.totalVramMb;
    const free = cpuOnly ? this.freeRamMb : this.freeVramMb;
    if (total <= 0) return false;
    return free < LOW_MEMORY_MB || (total - free) / total > HIGH_USAGE;
  }

  /** Breaker state now. */
  breakerState(): BreakerState {
    return this.breaker.state(this.clock());
  }

  /** The state reported to users. */
  state(): AgentState {
    const breaker = this.breakerState();
    if (!this.online || this.deregistered || breaker === 'open') return 'offline';
    // Its last health update said it is shutting down: it takes no new work.
    if (this.draining) return 'draining';
    if (this.endpointCheck !== 'verified') return 'unverified';
    if (breaker === 'half-open') return 'half-open';
    return this.isDegraded() ? 'degraded' : 'healthy';
  }
}

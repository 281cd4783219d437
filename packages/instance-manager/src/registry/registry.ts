import type { instanceManager } from '@titancompute/protocol';
import type { NotFoundError } from '../errors.js';
import type { InstanceRecord, Store } from '../store/store.js';
import { createCommands } from './commands.js';
import { createLiveness } from './liveness.js';
import { createQueries } from './queries.js';

export { MAX_SERVICES_PER_INSTANCE } from './commands.js';

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
   * then. Keep it above the sweep interval. Default 3000 ms (`INSTANCE_MANAGER_DEFAULTS.minOutageGapMs`).
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
  /**
   * Health checks of live instances are answered from memory and written to the storage in one
   * transaction at most this long after the first unwritten one (sweeps and {@link Registry.flush}
   * write them too). Staleness always counts them; what a crash can lose is the last-seen times
   * of at most this long. Default 100 ms (`INSTANCE_MANAGER_DEFAULTS.healthFlushIntervalMs`).
   */
  healthFlushIntervalMs?: number;
  /** Called when writing buffered health checks failed (they are kept and written with the next flush). */
  onFlushError?: (err: unknown) => void;
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
 * The registry's rules, written once over {@link Store}: liveness (killed, stale, cascade;
 * `liveness.ts`), the Try* writes — parent-child links without cycles, services, and the events
 * each change emits (`commands.ts`) — and the reads (`queries.ts`). Every mutation is one store
 * transaction.
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
  /** Sweeps first when some live instance may be stale, so reads never see one. */
  ensureSwept(): Promise<void>;
  /** Writes the acknowledged health checks not written yet (see {@link RegistryOptions.healthFlushIntervalMs}). Run before closing the store. */
  flush(): Promise<void>;
  /**
   * Forgets that `id` is alive, so that its next health check reads the storage: for a death
   * caused through another replica sharing the database (its REMOVED event).
   */
  forget(id: string): void;
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

/**
 * Creates the {@link Registry} over a store: its liveness (health checks, staleness, sweeps),
 * commands (Try* writes) and queries (reads that never return a dead instance) composed.
 */
export function createRegistry(store: Store, options: RegistryOptions): Registry {
  const liveness = createLiveness(store, options);
  // Commands write through the liveness' transactions, so what they create or kill is known here.
  const commands = createCommands({ ...store, transaction: liveness.transaction }, liveness);
  const queries = createQueries(store, liveness);
  return {
    staleTimeoutMs: liveness.staleTimeoutMs,
    now: liveness.now,
    upSinceMs: liveness.upSinceMs,
    isLive: liveness.isLive,
    sweep: liveness.sweep,
    ensureSwept: liveness.ensureSwept,
    flush: liveness.flush,
    forget: liveness.forget,
    healthCheck: liveness.healthCheck,
    addInstance: commands.addInstance,
    killInstance: commands.killInstance,
    addChild: commands.addChild,
    addService: commands.addService,
    getLive: queries.getLive,
    listLive: queries.listLive,
    describe: queries.describe,
    children: queries.children,
    parent: queries.parent,
  };
}

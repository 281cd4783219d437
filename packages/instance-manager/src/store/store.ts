import type { instanceManager, stats } from '@titancompute/protocol';
import type { InstanceRecord, MetricsKind, NewEvent, Presence } from './records.js';

export type { InstanceRecord, MetricsKind, NewEvent, Presence } from './records.js';

/**
 * The operations of one atomic transaction. Everything done through a `StoreTx` commits
 * together or not at all; on PostgreSQL the transaction also holds the registry-wide
 * advisory lock, so transactions through different replicas are serialised.
 */
export interface StoreTx {
  /** The instance, alive or dead; undefined when unknown. */
  getInstance(id: string): Promise<InstanceRecord | undefined>;
  /** Inserts an instance, replacing a dead one with the same id (a new incarnation). */
  insertInstance(record: InstanceRecord): Promise<void>;
  /** Records a health check (only on a live row). */
  touch(id: string, nowMs: number): Promise<void>;
  /**
   * Records many health checks at once (the registry's buffered heartbeats): the last health
   * check of each live row named becomes the later of the stored one and the given one. Returns
   * the ids that were not recorded because their row is dead or unknown.
   */
  touchMany(beats: ReadonlyMap<string, number>): Promise<string[]>;
  /** The oldest last health check among live rows (unix ms); undefined when no row is alive. */
  oldestAliveHealthMs(): Promise<number | undefined>;
  /**
   * Flips a live row to dead. With `onlyIfStaleBefore`, only when its last health check is
   * still older than that (a concurrent heartbeat wins). Returns whether it flipped.
   */
  markDead(
    id: string,
    death: {
      reason: instanceManager.RemovalReason;
      /** KILLED or STALE: the reason of the death that started the cascade. */
      rootReason: instanceManager.RemovalReason;
      message: string;
      nowMs: number;
      onlyIfStaleBefore?: number;
    },
  ): Promise<boolean>;
  setParent(childId: string, parentId: string): Promise<void>;
  setServices(id: string, services: instanceManager.Service[]): Promise<void>;
  /** Ids of live children of `parentId`. */
  aliveChildIds(parentId: string): Promise<string[]>;
  /** Ids of live rows whose last health check is older than `cutoffMs`. */
  staleAliveIds(cutoffMs: number): Promise<string[]>;
  /** The registry's up period (undefined until the first sweep ever). */
  readPresence(): Promise<Presence | undefined>;
  /** Replaces the registry's up period. */
  writePresence(presence: Presence): Promise<void>;
  /** Appends an event; returns its sequence number. Subscribers hear of it after commit. */
  appendEvent(event: NewEvent): Promise<number>;
}

/**
 * Storage of the registry. Three implementations: memory, SQLite (embedded default) and
 * PostgreSQL (several replicas on one database).
 */
export interface Store {
  readonly backend: 'memory' | 'sqlite' | 'postgres';
  /** Runs `fn` in one atomic, serialised transaction (retried by the store on serialisation failures). */
  transaction<T>(fn: (tx: StoreTx) => Promise<T>): Promise<T>;
  getInstance(id: string): Promise<InstanceRecord | undefined>;
  /** Live rows whose parent is `parentId`. */
  aliveChildren(parentId: string): Promise<InstanceRecord[]>;
  /** Every live row (staleness is the registry's business). */
  listAlive(): Promise<InstanceRecord[]>;
  /** Live rows and the sequence of the latest event, read consistently. */
  snapshot(): Promise<{ instances: InstanceRecord[]; sequence: number }>;
  /** Up to `limit` events with sequence > `afterSequence`, ascending. */
  readEvents(afterSequence: number, limit: number): Promise<instanceManager.InstanceEvent[]>;
  /** Sequence of the oldest retained event (latest + 1 when none) and of the latest one (0 when none ever). */
  eventBounds(): Promise<{ firstRetained: number; latest: number }>;
  /** Deletes all but the newest `keep` events; returns how many went. */
  pruneEvents(keep: number): Promise<number>;
  putMetrics(id: string, kind: MetricsKind, value: unknown): Promise<void>;
  getMetrics(id: string, kind: MetricsKind): Promise<unknown>;
  putStats(hostname: string, value: stats.Stats): Promise<void>;
  getStats(hostname: string): Promise<stats.Stats | undefined>;
  /**
   * Calls `listener` whenever new events may exist (after a local commit, or a NOTIFY from
   * another replica). Returns an unsubscribe function.
   */
  watch(listener: () => void): () => void;
  /** Closes connections and files. */
  close(): Promise<void>;
}

/** How to store the registry: `memory`, `sqlite` (in `dataDir`) or a `postgres://` URL. */
export type StorageSpec = { kind: 'memory' } | { kind: 'sqlite'; dataDir: string } | { kind: 'postgres'; url: string; schema?: string };

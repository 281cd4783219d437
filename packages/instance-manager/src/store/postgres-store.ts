import pg from 'pg';
import type { stats } from '@titancompute/protocol';
import { withPooledClient } from '@titancompute/server-kit';
import { StorageError } from '../errors.js';
import { createListenerSet } from './listeners.js';
import {
  eventToParams,
  recordToParams,
  rowToEvent,
  rowToPresence,
  rowToRecord,
  type EventRow,
  type InstanceRow,
  type PresenceRow,
  upsertInstanceSql,
} from './rows.js';
import type { MetricsKind, Store, StoreTx } from './store.js';

/** Options of {@link createPostgresStore}. */
export interface PostgresStoreOptions {
  /** `postgres://user@host:port/db` (a `?options=-c search_path=…` parameter is honoured). */
  url: string;
  /** Schema to create (if missing) and use; default: the connection's search_path. */
  schema?: string;
  /** Pool size. Default 10. */
  maxConnections?: number;
  /** Called when the LISTEN connection fails (it reconnects by itself). */
  onError?: (err: Error) => void;
}

const LOCK_CLASS = 0x7175;
const SCHEMA_RE = /^[a-z_][a-z0-9_]{0,62}$/;

/** Built once: the instance upsert with PostgreSQL's `$n` parameters. */
const UPSERT_INSTANCE = upsertInstanceSql((i) => `$${i + 1}`);

const MIGRATIONS: readonly string[] = [
  `CREATE TABLE instances (
     id TEXT PRIMARY KEY,
     type INTEGER NOT NULL,
     hostname TEXT NOT NULL,
     address TEXT NOT NULL,
     metadata TEXT NOT NULL,
     services TEXT NOT NULL,
     parent_id TEXT,
     alive BOOLEAN NOT NULL,
     last_health_ms BIGINT NOT NULL,
     created_at_ms BIGINT NOT NULL,
     died_at_ms BIGINT,
     removal_reason INTEGER,
     removal_message TEXT
   );
   CREATE INDEX instances_parent ON instances (parent_id);
   CREATE INDEX instances_alive_health ON instances (last_health_ms) WHERE alive;
   CREATE TABLE events (
     seq BIGSERIAL PRIMARY KEY,
     type INTEGER NOT NULL,
     instance_id TEXT NOT NULL,
     instance_type INTEGER NOT NULL,
     related_instance_id TEXT NOT NULL,
     service TEXT,
     instance TEXT,
     removal_reason INTEGER NOT NULL,
     timestamp_ms BIGINT NOT NULL
   );
   CREATE TABLE metrics (
     instance_id TEXT NOT NULL,
     kind TEXT NOT NULL,
     value TEXT NOT NULL,
     PRIMARY KEY (instance_id, kind)
   );
   CREATE TABLE host_stats (hostname TEXT PRIMARY KEY, value TEXT NOT NULL);`,
  // 2: the root reason of a death (a kill cascade vs staleness) and the registry's up period,
  // shared by every replica.
  `ALTER TABLE instances ADD COLUMN removal_root_reason INTEGER;
   CREATE TABLE registry_presence (
     id INTEGER PRIMARY KEY CHECK (id = 1),
     up_since_ms BIGINT NOT NULL,
     seen_ms BIGINT NOT NULL
   );`,
  // 3: health checks rewrite last_health_ms of every live row all the time; an index on it made
  // every such update a non-HOT one (a new index entry each time). Sweeps (once per sweep
  // interval) scan the live rows instead.
  `DROP INDEX instances_alive_health;
   CREATE INDEX instances_alive ON instances (id) WHERE alive;`,
];

function hash32(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h | 0;
}

const RETRYABLE = new Set(['40001', '40P01']);

/**
 * The scale-out store: PostgreSQL via `pg`. Several instance-manager replicas may share one
 * database (and schema): every Try* transaction takes a transaction-scoped advisory lock
 * (so concurrent calls through different replicas are serialised and events get sequence
 * numbers in commit order), and new events are announced with `NOTIFY` (payload: the
 * sequence) to every replica's `LISTEN` connection, which then reads them from the table.
 */
export async function createPostgresStore(options: PostgresStoreOptions): Promise<Store> {
  if (options.schema !== undefined && !SCHEMA_RE.test(options.schema)) {
    throw new StorageError(`invalid PostgreSQL schema name ${JSON.stringify(options.schema)}`, {
      backend: 'postgres',
      operation: 'open',
    });
  }
  const clientConfig: pg.ClientConfig = {
    connectionString: options.url,
    ...(options.schema ? { options: `-c search_path=${options.schema}` } : {}),
  };
  const pool = new pg.Pool({ ...clientConfig, max: options.maxConnections ?? 10 });
  pool.on('error', (err) => options.onError?.(err));
  let channel = '';
  let lockKey = 0;
  try {
    if (options.schema) await pool.query(`CREATE SCHEMA IF NOT EXISTS ${options.schema}`);
    const schemaRow = await pool.query<{ s: string | null }>('SELECT current_schema() AS s');
    const schema = schemaRow.rows[0]?.s;
    if (!schema) throw new Error('no current schema: set search_path or pass a schema');
    channel = `titan_im_${schema}`.slice(0, 63);
    lockKey = hash32(channel);
    await withPooledClient(
      () => pool.connect(),
      async (client) => {
        try {
          await client.query('BEGIN');
          await client.query('SELECT pg_advisory_xact_lock($1, $2)', [LOCK_CLASS, lockKey]);
          await client.query('CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at_ms BIGINT NOT NULL)');
          const cur = await client.query<{ v: number }>('SELECT COALESCE(MAX(version), 0)::int AS v FROM schema_migrations');
          const current = cur.rows[0]?.v ?? 0;
          for (let i = current; i < MIGRATIONS.length; i++) {
            await client.query(MIGRATIONS[i]!);
            await client.query('INSERT INTO schema_migrations (version, applied_at_ms) VALUES ($1, $2)', [i + 1, Date.now()]);
          }
          await client.query('COMMIT');
        } catch (err) {
          await client.query('ROLLBACK').catch(() => undefined);
          throw err;
        }
      },
    );
  } catch (cause) {
    await pool.end().catch(() => undefined);
    throw new StorageError(
      `cannot open PostgreSQL storage: ${(cause as Error).message}`,
      {
        backend: 'postgres',
        operation: 'open',
      },
      { cause },
    );
  }

  const listeners = createListenerSet();
  let closed = false;
  let listenClient: pg.Client | undefined;
  let reconnectTimer: NodeJS.Timeout | undefined;
  const listen = async (): Promise<void> => {
    const client = new pg.Client(clientConfig);
    const retry = (err: Error) => {
      options.onError?.(err);
      client.removeAllListeners();
      void client.end().catch(() => undefined);
      if (listenClient === client) listenClient = undefined;
      if (!closed && !reconnectTimer) {
        reconnectTimer = setTimeout(() => {
          reconnectTimer = undefined;
          void listen();
        }, 1000);
        reconnectTimer.unref();
      }
    };
    client.on('error', retry);
    client.on('notification', () => listeners.emit());
    try {
      await client.connect();
      await client.query(`LISTEN "${channel}"`);
      if (closed) {
        await client.end();
        return;
      }
      listenClient = client;
      listeners.emit(); // catch up on anything missed while disconnected
    } catch (err) {
      retry(err as Error);
    }
  };
  await listen();

  const txFor = (client: pg.PoolClient, appended: { seq: number }): StoreTx => ({
    getInstance: async (id) => {
      const r = await client.query<InstanceRow>('SELECT * FROM instances WHERE id = $1', [id]);
      return r.rows[0] ? rowToRecord(r.rows[0]) : undefined;
    },
    insertInstance: async (record) => {
      await client.query(UPSERT_INSTANCE, recordToParams(record));
    },
    touch: async (id, nowMs) => {
      await client.query('UPDATE instances SET last_health_ms = GREATEST(last_health_ms, $1) WHERE id = $2 AND alive', [nowMs, id]);
    },
    touchMany: async (beats) => {
      if (beats.size === 0) return [];
      // Sorted: rows are locked in one order whoever flushes.
      const ids = [...beats.keys()].sort();
      const r = await client.query<{ id: string }>(
        `UPDATE instances AS i SET last_health_ms = GREATEST(i.last_health_ms, b.ms)
         FROM unnest($1::text[], $2::bigint[]) AS b (id, ms)
         WHERE i.id = b.id AND i.alive
         RETURNING i.id`,
        [ids, ids.map((id) => beats.get(id)!)],
      );
      const recorded = new Set(r.rows.map((row) => row.id));
      return ids.filter((id) => !recorded.has(id));
    },
    oldestAliveHealthMs: async () => {
      const r = await client.query<{ m: string | null }>('SELECT MIN(last_health_ms)::bigint AS m FROM instances WHERE alive');
      const m = r.rows[0]?.m;
      return m === null || m === undefined ? undefined : Number(m);
    },
    markDead: async (id, death) => {
      const r = await client.query(
        `UPDATE instances SET alive = false, died_at_ms = $1, removal_reason = $2, removal_message = $3, removal_root_reason = $4
         WHERE id = $5 AND alive AND last_health_ms < $6`,
        [death.nowMs, death.reason, death.message, death.rootReason, id, death.onlyIfStaleBefore ?? Number.MAX_SAFE_INTEGER],
      );
      return (r.rowCount ?? 0) > 0;
    },
    setParent: async (childId, parentId) => {
      await client.query('UPDATE instances SET parent_id = $1 WHERE id = $2', [parentId, childId]);
    },
    setServices: async (id, services) => {
      await client.query('UPDATE instances SET services = $1 WHERE id = $2', [JSON.stringify(services), id]);
    },
    aliveChildIds: async (parentId) =>
      (await client.query<{ id: string }>('SELECT id FROM instances WHERE parent_id = $1 AND alive ORDER BY id', [parentId])).rows.map((r) => r.id),
    staleAliveIds: async (cutoffMs) =>
      (await client.query<{ id: string }>('SELECT id FROM instances WHERE alive AND last_health_ms < $1 ORDER BY last_health_ms, id', [cutoffMs])).rows.map(
        (r) => r.id,
      ),
    readPresence: async () => {
      const r = await client.query<PresenceRow>('SELECT up_since_ms, seen_ms FROM registry_presence WHERE id = 1');
      return r.rows[0] ? rowToPresence(r.rows[0]) : undefined;
    },
    writePresence: async (p) => {
      await client.query(
        `INSERT INTO registry_presence (id, up_since_ms, seen_ms) VALUES (1, $1, $2)
         ON CONFLICT (id) DO UPDATE SET up_since_ms = excluded.up_since_ms, seen_ms = excluded.seen_ms`,
        [p.upSinceMs, p.seenMs],
      );
    },
    appendEvent: async (event) => {
      const r = await client.query<{ seq: string }>(
        `INSERT INTO events (type, instance_id, instance_type, related_instance_id, service, instance, removal_reason, timestamp_ms)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING seq`,
        eventToParams(event),
      );
      appended.seq = Number(r.rows[0]!.seq);
      return appended.seq;
    },
  });

  const storageError = (operation: string, cause: unknown) =>
    new StorageError(`PostgreSQL ${operation} failed: ${(cause as Error).message}`, { backend: 'postgres', operation }, { cause });
  const query = async <R extends pg.QueryResultRow>(operation: string, text: string, values: unknown[] = [], name?: string) => {
    try {
      return await pool.query<R>(name ? { name, text, values } : { text, values });
    } catch (cause) {
      throw storageError(operation, cause);
    }
  };
  const maxSeq = 'SELECT COALESCE(MAX(seq), 0)::bigint AS s FROM events';

  /** A pool client; failing to get one is a StorageError (connect). */
  const connect = () => pool.connect().catch((cause: unknown) => Promise.reject(storageError('connect', cause)));

  return {
    backend: 'postgres',
    async transaction<T>(fn: (tx: StoreTx) => Promise<T>): Promise<T> {
      for (let attempt = 1; ; attempt++) {
        const outcome = await withPooledClient(connect, async (client): Promise<{ result: T } | 'retry'> => {
          const appended = { seq: 0 };
          try {
            await client.query('BEGIN');
            await client.query('SELECT pg_advisory_xact_lock($1, $2)', [LOCK_CLASS, lockKey]);
            const result = await fn(txFor(client, appended));
            if (appended.seq > 0) await client.query('SELECT pg_notify($1, $2)', [channel, String(appended.seq)]);
            await client.query('COMMIT');
            if (appended.seq > 0) queueMicrotask(() => listeners.emit());
            return { result };
          } catch (err) {
            await client.query('ROLLBACK').catch(() => undefined);
            const code = (err as { code?: string }).code;
            if (code && RETRYABLE.has(code) && attempt < 5) return 'retry';
            if (code) throw storageError('transaction', err);
            throw err;
          }
        });
        if (outcome !== 'retry') return outcome.result;
      }
    },
    async getInstance(id) {
      const r = await query<InstanceRow>('read', 'SELECT * FROM instances WHERE id = $1', [id]);
      return r.rows[0] ? rowToRecord(r.rows[0]) : undefined;
    },
    async aliveChildren(parentId) {
      const r = await query<InstanceRow>('read', 'SELECT * FROM instances WHERE parent_id = $1 AND alive ORDER BY created_at_ms, id', [parentId]);
      return r.rows.map(rowToRecord);
    },
    async listAlive() {
      const r = await query<InstanceRow>('read', 'SELECT * FROM instances WHERE alive ORDER BY created_at_ms, id');
      return r.rows.map(rowToRecord);
    },
    snapshot() {
      return withPooledClient(connect, async (client) => {
        try {
          await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
          const rows = await client.query<InstanceRow>('SELECT * FROM instances WHERE alive ORDER BY created_at_ms, id');
          const seq = await client.query<{ s: string }>(maxSeq);
          await client.query('COMMIT');
          return { instances: rows.rows.map(rowToRecord), sequence: Number(seq.rows[0]!.s) };
        } catch (cause) {
          await client.query('ROLLBACK').catch(() => undefined);
          throw storageError('snapshot', cause);
        }
      });
    },
    async readEvents(afterSequence, limit) {
      const r = await query<EventRow>('read events', 'SELECT * FROM events WHERE seq > $1 ORDER BY seq LIMIT $2', [afterSequence, limit]);
      return r.rows.map(rowToEvent);
    },
    async eventBounds() {
      const r = await query<{ first: string | null; latest: string }>(
        'read events',
        'SELECT MIN(seq)::bigint AS first, COALESCE(MAX(seq), 0)::bigint AS latest FROM events',
      );
      const latest = Number(r.rows[0]!.latest);
      const first = r.rows[0]!.first;
      return { firstRetained: first === null ? latest + 1 : Number(first), latest };
    },
    async pruneEvents(keep) {
      const r = await query('prune events', 'DELETE FROM events WHERE seq <= (SELECT MAX(seq) FROM events) - $1', [Math.max(1, keep)]);
      return r.rowCount ?? 0;
    },
    async putMetrics(id, kind: MetricsKind, value) {
      await query(
        'write metrics',
        'INSERT INTO metrics (instance_id, kind, value) VALUES ($1, $2, $3) ON CONFLICT (instance_id, kind) DO UPDATE SET value = excluded.value',
        [id, kind, JSON.stringify(value)],
      );
    },
    async getMetrics(id, kind: MetricsKind) {
      const r = await query<{ value: string }>('read metrics', 'SELECT value FROM metrics WHERE instance_id = $1 AND kind = $2', [id, kind]);
      return r.rows[0] ? (JSON.parse(r.rows[0].value) as unknown) : undefined;
    },
    async putStats(hostname, value) {
      await query('write stats', 'INSERT INTO host_stats (hostname, value) VALUES ($1, $2) ON CONFLICT (hostname) DO UPDATE SET value = excluded.value', [
        hostname,
        JSON.stringify(value),
      ]);
    },
    async getStats(hostname) {
      const r = await query<{ value: string }>('read stats', 'SELECT value FROM host_stats WHERE hostname = $1', [hostname]);
      return r.rows[0] ? (JSON.parse(r.rows[0].value) as stats.Stats) : undefined;
    },
    watch: (listener) => listeners.add(listener),
    async close() {
      if (closed) return;
      closed = true;
      if (reconnectTimer) clearTimeout(reconnectTimer);
      const lc = listenClient;
      listenClient = undefined;
      if (lc) {
        lc.removeAllListeners();
        lc.on('error', () => undefined);
        await lc.end().catch(() => undefined);
      }
      await pool.end().catch(() => undefined);
    },
  };
}

import pg from 'pg';
import { type Logger, withPooledClient } from '@titancompute/server-kit';
import { CoordinatorError, PostgresStoreError, SchemaVersionError } from '../errors.js';
import { COORDINATOR_SCHEMA_VERSION, POSTGRES_MIGRATIONS } from './postgres-migrations.js';

/** The table that records which migrations ran (one row per version). */
export const SCHEMA_VERSION_TABLE = 'coordinator_schema_version';

/** The NOTIFY channels replicas listen on; the payload says what changed (empty: re-read all). */
export const STORE_CHANNELS = {
  /** An API key was created or revoked (payload: the key id). */
  apiKeys: 'titan_coordinator_api_keys',
  /** An agent id was bound, released or got a verified endpoint (payload: the agent id). */
  identities: 'titan_coordinator_identities',
  /** The keyring rotated (payload: the new current kid). */
  keyring: 'titan_coordinator_keyring',
  /** Agents of the shared fleet changed (payload: `<replica id>|<agent id>,<agent id>…`; re-read those rows). */
  fleet: 'titan_coordinator_fleet',
} as const;

/** A channel of {@link STORE_CHANNELS}. */
export type StoreChannel = (typeof STORE_CHANNELS)[keyof typeof STORE_CHANNELS];

/** The advisory lock (two-int form: class, id) held while migrations run. */
const MIGRATION_LOCK: [number, number] = [0x7463_6f6f, 1];

/** How long the LISTEN connection waits before reconnecting (ms). */
const RECONNECT_MS = 1000;

/** Options of {@link openPostgresStore}. */
export interface PostgresStoreOptions {
  /** `postgres://user[:password]@host:port/database`. */
  url: string;
  /** Where connection problems of the LISTEN connection and idle pool clients are logged. */
  logger?: Logger | undefined;
  /** Pool size. Default 10. */
  maxConnections?: number;
}

/**
 * The coordinator's connection to PostgreSQL (`--store postgres`): a pool, the schema migrated
 * to {@link COORDINATOR_SCHEMA_VERSION}, and one LISTEN connection whose notifications reach the
 * handlers given to {@link PostgresStore.listen}. The API key store, the identity store and the
 * keyring of every replica share it through the same database.
 */
export interface PostgresStore {
  readonly pool: pg.Pool;
  /** The URL without its password (for logs and messages). */
  readonly location: string;
  /** The schema version after migrating. */
  readonly schemaVersion: number;
  /**
   * Calls `handler(payload)` on each NOTIFY on `channel`, and `handler('')` after the LISTEN
   * connection came back from a failure (notifications may have been missed: re-read). Returns
   * a function that removes the handler.
   */
  listen(channel: StoreChannel, handler: (payload: string) => void): () => void;
  /** Runs `fn` in a transaction on one pooled connection (ROLLBACK when it throws). */
  transaction<T>(fn: (client: pg.PoolClient) => Promise<T>): Promise<T>;
  /** Closes the LISTEN connection and the pool. Idempotent. */
  close(): Promise<void>;
}

/** The URL with its password replaced by `***` (never logged or shown). */
export function redactPostgresUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return 'postgres (unparsable URL)';
  }
}

/**
 * Runs the missing migrations under a session advisory lock (`pg_advisory_lock`): replicas
 * starting at once take turns, and the later ones find the schema current. Each migration runs
 * in its own transaction with its row in {@link SCHEMA_VERSION_TABLE}. Throws
 * {@link SchemaVersionError} when the database is newer than this coordinator. Returns the version.
 */
export async function migratePostgres(client: pg.ClientBase, location: string, migrations: readonly string[] = POSTGRES_MIGRATIONS): Promise<number> {
  await client.query('SELECT pg_advisory_lock($1, $2)', MIGRATION_LOCK);
  try {
    await client.query(
      `CREATE TABLE IF NOT EXISTS ${SCHEMA_VERSION_TABLE} (version INTEGER PRIMARY KEY, applied_at_ms BIGINT NOT NULL, applied_by TEXT NOT NULL)`,
    );
    const found = await client.query<{ v: number }>(`SELECT COALESCE(MAX(version), 0)::int AS v FROM ${SCHEMA_VERSION_TABLE}`);
    const current = found.rows[0]?.v ?? 0;
    if (current > migrations.length) throw new SchemaVersionError(location, 'coordinator', current, migrations.length, 'postgres');
    for (let v = current; v < migrations.length; v++) {
      await client.query('BEGIN');
      try {
        await client.query(migrations[v]!);
        await client.query(`INSERT INTO ${SCHEMA_VERSION_TABLE} (version, applied_at_ms, applied_by) VALUES ($1, $2, $3)`, [
          v + 1,
          Date.now(),
          `titan-coordinator pid ${process.pid}`,
        ]);
        await client.query('COMMIT');
      } catch (err) {
        await client.query('ROLLBACK').catch(() => undefined);
        throw err;
      }
    }
    return migrations.length;
  } finally {
    await client.query('SELECT pg_advisory_unlock($1, $2)', MIGRATION_LOCK).catch(() => undefined);
  }
}

/**
 * Connects to PostgreSQL, migrates the coordinator's schema (see {@link migratePostgres}) and
 * starts listening for the other replicas' changes. Throws {@link PostgresStoreError} (cannot
 * connect, migration failed) or {@link SchemaVersionError}; nothing is left open then.
 *
 * @example
 * ```ts
 * const store = await openPostgresStore({ url: 'postgres://titan@db:5432/titan' });
 * const stop = store.listen(STORE_CHANNELS.keyring, () => void keyring.reload());
 * await store.close();
 * ```
 */
export async function openPostgresStore(options: PostgresStoreOptions): Promise<PostgresStore> {
  const location = redactPostgresUrl(options.url);
  const logger = options.logger;
  const pool = new pg.Pool({ connectionString: options.url, max: options.maxConnections ?? 10 });
  pool.on('error', (err) => logger?.warn({ err, store: location }, 'PostgreSQL pool connection failed'));
  let schemaVersion: number;
  try {
    schemaVersion = await withPooledClient(
      () => pool.connect(),
      (client) => migratePostgres(client, location),
    );
  } catch (cause) {
    await pool.end().catch(() => undefined);
    if (cause instanceof CoordinatorError) throw cause;
    throw new PostgresStoreError(`cannot open the PostgreSQL store ${location}: ${(cause as Error).message}`, { location, operation: 'open' }, { cause });
  }

  const handlers = new Map<string, Set<(payload: string) => void>>();
  const emit = (channel: string, payload: string) => {
    for (const handler of handlers.get(channel) ?? []) {
      try {
        handler(payload);
      } catch (err) {
        logger?.error({ err, channel }, 'a PostgreSQL notification handler failed');
      }
    }
  };
  let closed = false;
  let listener: pg.Client | undefined;
  let reconnectTimer: NodeJS.Timeout | undefined;
  const connectListener = async (reconnecting: boolean): Promise<void> => {
    const client = new pg.Client({ connectionString: options.url });
    const retry = (err: Error) => {
      client.removeAllListeners();
      client.on('error', () => undefined);
      void client.end().catch(() => undefined);
      if (listener === client) listener = undefined;
      if (closed || reconnectTimer) return;
      logger?.warn({ err, store: location }, `PostgreSQL LISTEN connection failed; reconnecting in ${RECONNECT_MS} ms`);
      reconnectTimer = setTimeout(() => {
        reconnectTimer = undefined;
        void connectListener(true);
      }, RECONNECT_MS);
      reconnectTimer.unref();
    };
    client.on('error', retry);
    client.on('end', () => {
      if (!closed && listener === client) retry(new Error('connection ended'));
    });
    client.on('notification', (msg) => emit(msg.channel, msg.payload ?? ''));
    try {
      await client.connect();
      for (const channel of Object.values(STORE_CHANNELS)) await client.query(`LISTEN ${channel}`);
      if (closed) {
        await client.end();
        return;
      }
      listener = client;
      // Changes made while the connection was down were not announced: every handler re-reads.
      if (reconnecting) for (const channel of handlers.keys()) emit(channel, '');
    } catch (err) {
      if (!reconnecting) throw err;
      retry(err as Error);
    }
  };
  try {
    await connectListener(false);
  } catch (cause) {
    await pool.end().catch(() => undefined);
    throw new PostgresStoreError(
      `cannot LISTEN on the PostgreSQL store ${location}: ${(cause as Error).message}`,
      { location, operation: 'listen' },
      { cause },
    );
  }

  let closing: Promise<void> | undefined;
  return {
    pool,
    location,
    schemaVersion,
    listen(channel, handler) {
      let set = handlers.get(channel);
      if (!set) handlers.set(channel, (set = new Set()));
      set.add(handler);
      return () => void set.delete(handler);
    },
    transaction(fn) {
      return withPooledClient(
        () => pool.connect(),
        async (client) => {
          try {
            await client.query('BEGIN');
            const result = await fn(client);
            await client.query('COMMIT');
            return result;
          } catch (err) {
            await client.query('ROLLBACK').catch(() => undefined);
            throw err;
          }
        },
      );
    },
    close() {
      closing ??= (async () => {
        closed = true;
        if (reconnectTimer) clearTimeout(reconnectTimer);
        handlers.clear();
        const l = listener;
        listener = undefined;
        await l?.end().catch(() => undefined);
        await pool.end().catch(() => undefined);
      })();
      return closing;
    },
  };
}

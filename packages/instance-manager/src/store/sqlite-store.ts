import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import type { stats } from '@titancompute/protocol';
import { StorageError } from '../errors.js';
import { createMutex } from '../util/mutex.js';
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

/** File name of the database inside the data directory. */
export const SQLITE_FILE_NAME = 'instance-manager.db';

const MIGRATIONS: readonly string[] = [
  `CREATE TABLE instances (
     id TEXT PRIMARY KEY,
     type INTEGER NOT NULL,
     hostname TEXT NOT NULL,
     address TEXT NOT NULL,
     metadata TEXT NOT NULL,
     services TEXT NOT NULL,
     parent_id TEXT,
     alive INTEGER NOT NULL,
     last_health_ms INTEGER NOT NULL,
     created_at_ms INTEGER NOT NULL,
     died_at_ms INTEGER,
     removal_reason INTEGER,
     removal_message TEXT
   );
   CREATE INDEX instances_parent ON instances(parent_id);
   CREATE INDEX instances_alive_health ON instances(last_health_ms) WHERE alive = 1;
   CREATE TABLE events (
     seq INTEGER PRIMARY KEY AUTOINCREMENT,
     type INTEGER NOT NULL,
     instance_id TEXT NOT NULL,
     instance_type INTEGER NOT NULL,
     related_instance_id TEXT NOT NULL,
     service TEXT,
     instance TEXT,
     removal_reason INTEGER NOT NULL,
     timestamp_ms INTEGER NOT NULL
   );
   CREATE TABLE metrics (
     instance_id TEXT NOT NULL,
     kind TEXT NOT NULL,
     value TEXT NOT NULL,
     PRIMARY KEY (instance_id, kind)
   );
   CREATE TABLE host_stats (hostname TEXT PRIMARY KEY, value TEXT NOT NULL);`,
  // 2: the root reason of a death (a kill cascade vs staleness) and the registry's up period.
  `ALTER TABLE instances ADD COLUMN removal_root_reason INTEGER;
   CREATE TABLE registry_presence (
     id INTEGER PRIMARY KEY CHECK (id = 1),
     up_since_ms INTEGER NOT NULL,
     seen_ms INTEGER NOT NULL
   );`,
  // 3: health checks rewrite last_health_ms of every live row all the time; an index on it moved an
  // index entry on every write. Sweeps (once per sweep interval) scan the live rows instead.
  `DROP INDEX instances_alive_health;
   CREATE INDEX instances_alive ON instances(id) WHERE alive = 1;`,
];

/**
 * The embedded store: SQLite (better-sqlite3) in WAL mode in `<dataDir>/instance-manager.db`.
 * Migrations run on open. Transactions are `BEGIN IMMEDIATE … COMMIT`, serialised in-process.
 */
export function createSqliteStore(options: { dataDir: string }): Store {
  let db: Database.Database;
  try {
    mkdirSync(options.dataDir, { recursive: true });
    db = new Database(join(options.dataDir, SQLITE_FILE_NAME));
    db.pragma('journal_mode = WAL');
    db.pragma('synchronous = NORMAL');
    db.pragma('busy_timeout = 5000');
    db.exec('CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at_ms INTEGER NOT NULL)');
    const current = (db.prepare('SELECT COALESCE(MAX(version), 0) AS v FROM schema_migrations').get() as { v: number }).v;
    MIGRATIONS.forEach((sql, i) => {
      const version = i + 1;
      if (version <= current) return;
      db.transaction(() => {
        db.exec(sql);
        db.prepare('INSERT INTO schema_migrations (version, applied_at_ms) VALUES (?, ?)').run(version, Date.now());
      })();
    });
  } catch (cause) {
    throw new StorageError(
      `cannot open SQLite database in ${options.dataDir}: ${(cause as Error).message}`,
      {
        backend: 'sqlite',
        operation: 'open',
      },
      { cause },
    );
  }

  const s = {
    get: db.prepare('SELECT * FROM instances WHERE id = ?'),
    insert: db.prepare(upsertInstanceSql(() => '?')),
    touch: db.prepare('UPDATE instances SET last_health_ms = ? WHERE id = ? AND alive = 1'),
    touchLater: db.prepare('UPDATE instances SET last_health_ms = MAX(last_health_ms, ?) WHERE id = ? AND alive = 1'),
    oldestAlive: db.prepare('SELECT MIN(last_health_ms) AS m FROM instances WHERE alive = 1'),
    kill: db.prepare(
      `UPDATE instances SET alive = 0, died_at_ms = ?, removal_reason = ?, removal_message = ?, removal_root_reason = ?
       WHERE id = ? AND alive = 1 AND last_health_ms < ?`,
    ),
    readPresence: db.prepare('SELECT up_since_ms, seen_ms FROM registry_presence WHERE id = 1'),
    writePresence: db.prepare(
      'INSERT INTO registry_presence (id, up_since_ms, seen_ms) VALUES (1, ?, ?) ON CONFLICT (id) DO UPDATE SET up_since_ms = excluded.up_since_ms, seen_ms = excluded.seen_ms',
    ),
    setParent: db.prepare('UPDATE instances SET parent_id = ? WHERE id = ?'),
    setServices: db.prepare('UPDATE instances SET services = ? WHERE id = ?'),
    children: db.prepare('SELECT id FROM instances WHERE parent_id = ? AND alive = 1 ORDER BY id'),
    childRows: db.prepare('SELECT * FROM instances WHERE parent_id = ? AND alive = 1 ORDER BY created_at_ms, id'),
    staleIds: db.prepare('SELECT id FROM instances WHERE alive = 1 AND last_health_ms < ? ORDER BY last_health_ms, id'),
    listAlive: db.prepare('SELECT * FROM instances WHERE alive = 1 ORDER BY created_at_ms, id'),
    appendEvent: db.prepare(
      `INSERT INTO events (type, instance_id, instance_type, related_instance_id, service, instance, removal_reason, timestamp_ms)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
    ),
    readEvents: db.prepare('SELECT * FROM events WHERE seq > ? ORDER BY seq LIMIT ?'),
    firstEvent: db.prepare('SELECT MIN(seq) AS s FROM events'),
    latestEvent: db.prepare("SELECT COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'events'), 0) AS s"),
    prune: db.prepare('DELETE FROM events WHERE seq <= (SELECT MAX(seq) FROM events) - ?'),
    putMetrics: db.prepare(
      'INSERT INTO metrics (instance_id, kind, value) VALUES (?, ?, ?) ON CONFLICT (instance_id, kind) DO UPDATE SET value = excluded.value',
    ),
    getMetrics: db.prepare('SELECT value FROM metrics WHERE instance_id = ? AND kind = ?'),
    putStats: db.prepare('INSERT INTO host_stats (hostname, value) VALUES (?, ?) ON CONFLICT (hostname) DO UPDATE SET value = excluded.value'),
    getStats: db.prepare('SELECT value FROM host_stats WHERE hostname = ?'),
  };
  const sqlParams = (params: unknown[]) => params.map((p) => (typeof p === 'boolean' ? (p ? 1 : 0) : p));
  const latest = () => (s.latestEvent.get() as { s: number }).s;

  const mutex = createMutex();
  const listeners = createListenerSet();
  // Runs a synchronous read or write outside any open transaction.
  const outside = <T>(fn: () => T): Promise<T> => (mutex.locked ? mutex.runExclusive(fn) : Promise.resolve(fn()));

  const tx: StoreTx = {
    getInstance: async (id) => {
      const row = s.get.get(id) as InstanceRow | undefined;
      return row ? rowToRecord(row) : undefined;
    },
    insertInstance: async (record) => {
      s.insert.run(...sqlParams(recordToParams(record)));
    },
    touch: async (id, nowMs) => {
      s.touch.run(nowMs, id);
    },
    touchMany: async (beats) => {
      const missed: string[] = [];
      for (const [id, ms] of beats) if (s.touchLater.run(ms, id).changes === 0) missed.push(id);
      return missed;
    },
    oldestAliveHealthMs: async () => (s.oldestAlive.get() as { m: number | null }).m ?? undefined,
    markDead: async (id, death) =>
      s.kill.run(death.nowMs, death.reason, death.message, death.rootReason, id, death.onlyIfStaleBefore ?? Number.MAX_SAFE_INTEGER).changes > 0,
    setParent: async (childId, parentId) => {
      s.setParent.run(parentId, childId);
    },
    setServices: async (id, services) => {
      s.setServices.run(JSON.stringify(services), id);
    },
    aliveChildIds: async (parentId) => (s.children.all(parentId) as { id: string }[]).map((r) => r.id),
    staleAliveIds: async (cutoffMs) => (s.staleIds.all(cutoffMs) as { id: string }[]).map((r) => r.id),
    readPresence: async () => {
      const row = s.readPresence.get() as PresenceRow | undefined;
      return row ? rowToPresence(row) : undefined;
    },
    writePresence: async (p) => {
      s.writePresence.run(p.upSinceMs, p.seenMs);
    },
    appendEvent: async (event) => Number(s.appendEvent.run(...eventToParams(event)).lastInsertRowid),
  };

  return {
    backend: 'sqlite',
    transaction<T>(fn: (tx: StoreTx) => Promise<T>): Promise<T> {
      return mutex.runExclusive(async () => {
        const before = latest();
        db.exec('BEGIN IMMEDIATE');
        let result: T;
        try {
          result = await fn(tx);
          db.exec('COMMIT');
        } catch (err) {
          if (db.inTransaction) db.exec('ROLLBACK');
          throw err;
        }
        if (latest() !== before) queueMicrotask(() => listeners.emit());
        return result;
      });
    },
    getInstance: (id) =>
      outside(() => {
        const row = s.get.get(id) as InstanceRow | undefined;
        return row ? rowToRecord(row) : undefined;
      }),
    aliveChildren: (parentId) => outside(() => (s.childRows.all(parentId) as InstanceRow[]).map(rowToRecord)),
    listAlive: () => outside(() => (s.listAlive.all() as InstanceRow[]).map(rowToRecord)),
    snapshot: () => outside(() => ({ instances: (s.listAlive.all() as InstanceRow[]).map(rowToRecord), sequence: latest() })),
    readEvents: (afterSequence, limit) => outside(() => (s.readEvents.all(afterSequence, limit) as EventRow[]).map(rowToEvent)),
    eventBounds: () =>
      outside(() => {
        const l = latest();
        const first = (s.firstEvent.get() as { s: number | null }).s;
        return { firstRetained: first ?? l + 1, latest: l };
      }),
    pruneEvents: (keep) => outside(() => s.prune.run(keep).changes),
    putMetrics: (id, kind: MetricsKind, value) => outside(() => void s.putMetrics.run(id, kind, JSON.stringify(value))),
    getMetrics: (id, kind: MetricsKind) =>
      outside(() => {
        const row = s.getMetrics.get(id, kind) as { value: string } | undefined;
        return row ? (JSON.parse(row.value) as unknown) : undefined;
      }),
    putStats: (hostname, value) => outside(() => void s.putStats.run(hostname, JSON.stringify(value))),
    getStats: (hostname) =>
      outside(() => {
        const row = s.getStats.get(hostname) as { value: string } | undefined;
        return row ? (JSON.parse(row.value) as stats.Stats) : undefined;
      }),
    watch: (listener) => listeners.add(listener),
    close: () =>
      mutex.runExclusive(() => {
        if (db.open) db.close();
      }),
  };
}

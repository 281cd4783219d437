import { afterEach, beforeEach, describe, expect, it } from '@jest/globals';
import pg from 'pg';
import { createTestDatabase, postgresAvailable, type TestDatabase } from '@titancompute/test-support/postgres';
import { createPostgresStore } from './postgres-store.js';
import type { Store } from './store.js';

const pgUp = await postgresAvailable('instance-manager PostgreSQL store');
const describePg = pgUp ? describe : () => undefined;

describePg('the PostgreSQL store when PostgreSQL cuts its connections', () => {
  let db: TestDatabase;
  let store: Store | undefined;
  let locker: pg.Client | undefined;
  beforeEach(async () => {
    db = await createTestDatabase();
  });
  afterEach(async () => {
    await locker?.end().catch(() => undefined);
    locker = undefined;
    await store?.close();
    store = undefined;
    await db.drop();
  });

  it('a transaction whose connection is terminated fails, the process does not; the next transaction works', async () => {
    store = await createPostgresStore({ url: db.url });
    // Another session holds the instances table, so the store's transaction waits inside PostgreSQL…
    locker = new pg.Client({ connectionString: db.url });
    await locker.connect();
    await locker.query('BEGIN');
    await locker.query('LOCK TABLE instances IN ACCESS EXCLUSIVE MODE');
    const waiting = store.transaction((tx) => tx.getInstance('some-instance'));
    const failed = expect(waiting).rejects.toThrow();
    // …where it is cut, as a PostgreSQL restart or failover cuts every open connection.
    let victim: number | undefined;
    while (victim === undefined) {
      const rows = await db.query("SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock' AND pid <> $1", [
        (locker as unknown as { processID: number }).processID,
      ]);
      victim = rows.rows[0]?.pid as number | undefined;
      if (victim === undefined) await new Promise((r) => setTimeout(r, 10));
    }
    await db.query('SELECT pg_terminate_backend($1)', [victim]);
    await failed;
    await locker.query('ROLLBACK');
    await expect(store.transaction((tx) => tx.getInstance('some-instance'))).resolves.toBeUndefined();
    await expect(store.snapshot()).resolves.toMatchObject({ instances: [] });
  });
});

import { rmSync } from 'node:fs';
import { afterEach, beforeEach, describe, expect, it } from '@jest/globals';
import { SchemaVersionError } from '../errors.js';
import { makeTempDir, startTestCoordinator } from '../test-support/test-coordinator.js';
import { createTestDatabase, postgresAvailable, testKeyringSecret, type TestDatabase } from '@titancompute/test-support/postgres';
import { COORDINATOR_SCHEMA_VERSION } from './postgres-migrations.js';
import { openPostgresStore, SCHEMA_VERSION_TABLE, type PostgresStore } from './postgres-store.js';

const pgUp = await postgresAvailable('coordinator PostgreSQL store');
const describePg = pgUp ? describe : () => undefined;

describePg('the PostgreSQL store: versioned migrations', () => {
  let db: TestDatabase;
  const opened: PostgresStore[] = [];
  beforeEach(async () => {
    db = await createTestDatabase();
  });
  afterEach(async () => {
    for (const s of opened.splice(0)) await s.close();
    await db.drop();
  });

  it('replicas starting at once all come up (advisory lock): each migration ran once and is recorded', async () => {
    const stores = await Promise.all(Array.from({ length: 4 }, () => openPostgresStore({ url: db.url })));
    opened.push(...stores);
    expect(stores.map((s) => s.schemaVersion)).toEqual(Array(4).fill(COORDINATOR_SCHEMA_VERSION));
    const rows = await db.query(`SELECT version FROM ${SCHEMA_VERSION_TABLE} ORDER BY version`);
    expect(rows.rows.map((r: { version: number }) => r.version)).toEqual(Array.from({ length: COORDINATOR_SCHEMA_VERSION }, (_, i) => i + 1));
    const tables = await db.query("SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' ORDER BY table_name");
    expect(tables.rows.map((r: { table_name: string }) => r.table_name)).toEqual(
      expect.arrayContaining(['agent_identities', 'api_key_charges', 'api_key_grants', 'api_keys', 'keyring_current', 'keyring_keys']),
    );
    // The lock was released: a later replica migrates nothing and starts too.
    opened.push(await openPostgresStore({ url: db.url }));
  });

  it('refuses a database a newer coordinator migrated, naming both versions and the fix; startCoordinator fails with it', async () => {
    opened.push(await openPostgresStore({ url: db.url }));
    const newer = COORDINATOR_SCHEMA_VERSION + 1;
    await db.query(`INSERT INTO ${SCHEMA_VERSION_TABLE} (version, applied_at_ms, applied_by) VALUES ($1, 0, 'a newer coordinator')`, [newer]);
    const refused = openPostgresStore({ url: db.url });
    await expect(refused).rejects.toThrow(SchemaVersionError);
    await expect(openPostgresStore({ url: db.url })).rejects.toThrow(
      new RegExp(`schema is version ${newer}, newer than this coordinator's ${COORDINATOR_SCHEMA_VERSION}: .*upgrade the coordinator`),
    );
    await expect(openPostgresStore({ url: db.url })).rejects.toMatchObject({ found: newer, supported: COORDINATOR_SCHEMA_VERSION });
    const dataDir = makeTempDir();
    try {
      await expect(startTestCoordinator({ dataDir, store: 'postgres', postgresUrl: db.url, keyringSecret: testKeyringSecret() })).rejects.toThrow(
        /upgrade the coordinator/,
      );
    } finally {
      rmSync(dataDir, { recursive: true, force: true });
    }
    // Nothing was changed by the refused replicas.
    const max = await db.query(`SELECT max(version) AS v FROM ${SCHEMA_VERSION_TABLE}`);
    expect(max.rows[0].v).toBe(newer);
  });

  it('a URL nobody answers is a PostgresStoreError naming the URL without its password', async () => {
    await expect(openPostgresStore({ url: 'postgres://titan:hunter2@127.0.0.1:1/none' })).rejects.toThrow(
      /cannot open the PostgreSQL store postgres:\/\/titan:\*\*\*@127\.0\.0\.1:1\/none/,
    );
  });

  it('PostgreSQL cutting a transaction’s connection fails that transaction, not the process; the next one gets a fresh connection', async () => {
    const store = await openPostgresStore({ url: db.url });
    opened.push(store);
    let backend: number | undefined;
    const cut = store.transaction(async (client) => {
      backend = (await client.query('SELECT pg_backend_pid() AS pid')).rows[0].pid as number;
      await client.query('SELECT pg_sleep(10)');
    });
    const failed = expect(cut).rejects.toThrow(/terminat|ECONNRESET|Connection/i);
    while (backend === undefined) await new Promise((r) => setTimeout(r, 10));
    // What a PostgreSQL restart or failover does to every open connection.
    await db.query('SELECT pg_terminate_backend($1)', [backend]);
    await failed;
    const next = await store.transaction(
      async (client) => (await client.query('SELECT pg_backend_pid() AS pid, 1 AS one')).rows[0] as { pid: number; one: number },
    );
    expect(next.one).toBe(1);
    expect(next.pid).not.toBe(backend);
  });
});

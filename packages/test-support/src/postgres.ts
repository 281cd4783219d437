import { randomBytes } from 'node:crypto';
import pg from 'pg';

/**
 * The PostgreSQL test helpers every package shares (the instance manager's, the coordinator's
 * and the e2e suites' PostgreSQL tests).
 *
 * @packageDocumentation
 */

/** The PostgreSQL the project's machines run (override with TITAN_TEST_PG_URL): trust auth, database `test`. */
export const TEST_PG_URL = process.env.TITAN_TEST_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/test';

/**
 * Whether PostgreSQL answers. With CI=true an unreachable database
 * throws (the tests are required there); otherwise a line says the PostgreSQL tests are skipped and why.
 */
export async function postgresAvailable(suite: string): Promise<boolean> {
  const client = new pg.Client({ connectionString: TEST_PG_URL, connectionTimeoutMillis: 2000 });
  try {
    await client.connect();
    await client.query('SELECT 1');
    return true;
  } catch (err) {
    const why = `PostgreSQL at ${TEST_PG_URL} is unreachable: ${(err as Error).message}`;
    if (process.env.CI === 'true') throw new Error(`${why} (required when CI=true)`);
    process.stdout.write(`[${suite}] PostgreSQL tests skipped: ${why}\n`);
    return false;
  } finally {
    await client.end().catch(() => undefined);
  }
}

/** A fresh database for one test. */
export interface TestDatabase {
  name: string;
  /** The URL of the new database (same server and user as {@link TEST_PG_URL}). */
  url: string;
  /** Runs one statement on it (a short-lived connection). */
  query(sql: string, params?: unknown[]): Promise<pg.QueryResult>;
  /** Drops it (closing whatever is still connected). */
  drop(): Promise<void>;
}

/** Runs `fn` on a short-lived connection to `url`. */
async function withClient<T>(url: string, fn: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end().catch(() => undefined);
  }
}

/**
 * Creates an empty database on the test server (`titan_test_<random>`): each test gets its own
 * schema versions, tables and NOTIFY channels. `drop()` removes it.
 */
export async function createTestDatabase(): Promise<TestDatabase> {
  const name = `titan_test_${randomBytes(6).toString('hex')}`;
  await withClient(TEST_PG_URL, (c) => c.query(`CREATE DATABASE ${name}`));
  const url = new URL(TEST_PG_URL);
  url.pathname = `/${name}`;
  return {
    name,
    url: url.toString(),
    query: (sql, params) => withClient(url.toString(), (c) => c.query(sql, params)),
    drop: () => withClient(TEST_PG_URL, (c) => c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`)).then(() => undefined),
  };
}

/** A keyring secret for a coordinator on PostgreSQL (`--keyring-secret`: 32 random bytes, base64). */
export function testKeyringSecret(): string {
  return randomBytes(32).toString('base64');
}

import { chmodSync, closeSync, mkdirSync, openSync } from 'node:fs';
import Database from 'better-sqlite3';
import { ApiKeyExistsError, ApiKeyStoreError, CoordinatorError } from '../errors.js';
import { identityStorePath } from '../identity/identity-store.js';
import { apiKeyState, type NewApiKey } from './api-key.js';
import { API_KEY_COLUMNS, type ApiKeyRow, type ApiKeyStore, apiKeyFromRow } from './api-key-store.js';

/** The name of the API keys' schema in the `schema_versions` table. */
export const API_KEYS_SCHEMA = 'api_keys';

/** Migrations of the `api_keys` table, in order: entry i brings the schema to version i + 1. */
const MIGRATIONS: readonly string[] = [
  `CREATE TABLE api_keys (
     id TEXT PRIMARY KEY NOT NULL,
     name TEXT NOT NULL,
     prefix TEXT NOT NULL,
     secret_sha256 BLOB NOT NULL UNIQUE,
     requests_per_minute INTEGER NOT NULL,
     tokens_per_minute INTEGER NOT NULL,
     max_concurrent INTEGER NOT NULL,
     budget_tokens INTEGER NOT NULL,
     models TEXT NOT NULL,
     created_at INTEGER NOT NULL,
     expires_at INTEGER,
     revoked_at INTEGER,
     tokens_used INTEGER NOT NULL DEFAULT 0,
     requests_total INTEGER NOT NULL DEFAULT 0,
     last_used_at INTEGER
   );
   CREATE INDEX api_keys_by_name ON api_keys (name);`,
];

/** The schema version this coordinator writes. */
export const API_KEYS_SCHEMA_VERSION = MIGRATIONS.length;

/** Options of {@link openSqliteApiKeyStore}. */
export interface SqliteApiKeyStoreOptions {
  /** The coordinator's data dir: the store is the `api_keys` table of `<dataDir>/coordinator.db`. */
  dataDir: string;
}

/**
 * Opens the API key store in the coordinator's SQLite database (`<data-dir>/coordinator.db`,
 * WAL, mode 0600, beside the agent identities), creating or migrating its `api_keys` table
 * (version kept in `schema_versions`; a database written by a newer coordinator is refused).
 * Secrets are never stored: only their SHA-256.
 *
 * @example
 * ```ts
 * const store = openSqliteApiKeyStore({ dataDir: './.titan/coordinator' });
 * const keys = await store.list();
 * await store.close();
 * ```
 */
export function openSqliteApiKeyStore(options: SqliteApiKeyStoreOptions): ApiKeyStore {
  const file = identityStorePath(options.dataDir);
  let db: Database.Database;
  try {
    mkdirSync(options.dataDir, { recursive: true, mode: 0o700 });
    closeSync(openSync(file, 'a', 0o600));
    chmodSync(file, 0o600);
    db = new Database(file);
    db.pragma('journal_mode = WAL');
    db.pragma('busy_timeout = 5000');
    db.transaction(() => {
      db.exec('CREATE TABLE IF NOT EXISTS schema_versions (schema TEXT PRIMARY KEY NOT NULL, version INTEGER NOT NULL) WITHOUT ROWID');
      const current = db.prepare<[string], { version: number }>('SELECT version FROM schema_versions WHERE schema = ?').get(API_KEYS_SCHEMA)?.version ?? 0;
      if (current > MIGRATIONS.length) {
        throw new Error(`its ${API_KEYS_SCHEMA} schema is version ${current}, newer than this coordinator's ${MIGRATIONS.length}: upgrade the coordinator`);
      }
      for (let v = current; v < MIGRATIONS.length; v++) db.exec(MIGRATIONS[v]!);
      db.prepare('INSERT INTO schema_versions (schema, version) VALUES (?, ?) ON CONFLICT (schema) DO UPDATE SET version = excluded.version').run(
        API_KEYS_SCHEMA,
        MIGRATIONS.length,
      );
    })();
  } catch (cause) {
    throw new ApiKeyStoreError(`cannot open the API key store ${file}: ${(cause as Error).message}`, { file }, { cause });
  }
  const insert = db.prepare(
    'INSERT INTO api_keys (id, name, prefix, secret_sha256, requests_per_minute, tokens_per_minute, max_concurrent, budget_tokens, models, created_at, expires_at) ' +
      'VALUES (@id, @name, @prefix, @secret, @rpm, @tpm, @concurrent, @budget, @models, @created, @expires)',
  );
  const byId = db.prepare<[string], ApiKeyRow>(`SELECT ${API_KEY_COLUMNS} FROM api_keys WHERE id = ?`);
  const byName = db.prepare<[string], ApiKeyRow>(`SELECT ${API_KEY_COLUMNS} FROM api_keys WHERE name = ? ORDER BY created_at DESC, rowid DESC`);
  const bySecret = db.prepare<[Buffer], ApiKeyRow>(`SELECT ${API_KEY_COLUMNS} FROM api_keys WHERE secret_sha256 = ?`);
  const all = db.prepare<[], ApiKeyRow>(`SELECT ${API_KEY_COLUMNS} FROM api_keys ORDER BY created_at, rowid`);
  const revoke = db.prepare<[number, string]>('UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL');
  const request = db.prepare<[number, string]>(
    'UPDATE api_keys SET requests_total = requests_total + 1, last_used_at = MAX(COALESCE(last_used_at, 0), ?) WHERE id = ?',
  );
  const tokens = db.prepare<[number, string]>('UPDATE api_keys SET tokens_used = tokens_used + ? WHERE id = ?');

  /** Runs `fn`, turning database failures into {@link ApiKeyStoreError} (the store's own errors pass). */
  const guard = async <T>(what: string, fn: () => T): Promise<T> => {
    try {
      return fn();
    } catch (cause) {
      if (cause instanceof CoordinatorError) throw cause;
      throw new ApiKeyStoreError(`API key store ${file}: cannot ${what}: ${(cause as Error).message}`, { file }, { cause });
    }
  };
  const createTx = db.transaction((key: NewApiKey, nowMs: number) => {
    if (byName.all(key.name).some((row) => apiKeyState(apiKeyFromRow(row), nowMs) === 'active')) throw new ApiKeyExistsError(key.name);
    insert.run({
      id: key.id,
      name: key.name,
      prefix: key.prefix,
      secret: key.secretSha256,
      rpm: key.requestsPerMinute,
      tpm: key.tokensPerMinute,
      concurrent: key.maxConcurrent,
      budget: key.budgetTokens,
      models: JSON.stringify(key.models),
      created: key.createdAtMs,
      expires: key.expiresAtMs ?? null,
    });
    return apiKeyFromRow(byId.get(key.id)!);
  });
  const revokeTx = db.transaction((idOrName: string, nowMs: number) => {
    const row = byId.get(idOrName) ?? byName.all(idOrName).find((r) => r.revoked_at === null) ?? byName.all(idOrName)[0];
    if (!row) return undefined;
    revoke.run(nowMs, row.id);
    return apiKeyFromRow(byId.get(row.id)!);
  });

  return {
    backend: 'sqlite',
    location: file,
    create: (key, nowMs) => guard('create a key', () => createTx(key, nowMs)),
    findBySecret: (digest) =>
      guard('look a key up', () => {
        const row = bySecret.get(digest);
        return row ? apiKeyFromRow(row) : undefined;
      }),
    list: () => guard('list keys', () => all.all().map(apiKeyFromRow)),
    revoke: (idOrName, nowMs) => guard('revoke a key', () => revokeTx(idOrName, nowMs)),
    recordRequest: (id, atMs) => guard('record a request', () => void request.run(atMs, id)),
    addTokens: (id, n) => guard('charge tokens', () => void tokens.run(n, id)),
    async close() {
      if (db.open) db.close();
    },
  };
}

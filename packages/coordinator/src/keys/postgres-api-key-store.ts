import type pg from 'pg';
import { ApiKeyExistsError, ApiKeyStoreError, CoordinatorError } from '../errors.js';
import { STORE_CHANNELS, type PostgresStore } from '../store/postgres-store.js';
import { apiKeyState } from './api-key.js';
import {
  API_KEY_COLUMNS,
  type ApiKeyRow,
  type ApiKeyStore,
  apiKeyFromRow,
  optionalNumber,
  type SharedQuotas,
  type SharedQuotaTake,
  type SharedWindowUsage,
} from './api-key-store.js';
import { RATE_WINDOW_MS } from './sliding-window.js';

/** The PostgreSQL {@link ApiKeyStore}: always shared, so its quotas count for the whole cluster and changes are announced. */
export interface PostgresApiKeyStore extends ApiKeyStore {
  readonly backend: 'postgres';
  readonly sharedQuotas: SharedQuotas;
  watch(listener: () => void): () => void;
}

/** Options of {@link openPostgresApiKeyStore}. */
export interface PostgresApiKeyStoreOptions {
  /** The coordinator's PostgreSQL store (migrated); this store does not close it. */
  store: PostgresStore;
}

/** The sliding-minute counts of one key at `nowMs` (grants and charges after the cutoff), pruning what left the window. */
async function windowUsage(client: pg.PoolClient, keyId: string, nowMs: number): Promise<SharedWindowUsage> {
  const cutoff = nowMs - RATE_WINDOW_MS;
  // The DELETEs and the counts see one snapshot: the counts filter by the cutoff themselves.
  const r = await client.query<{ requests: number; last_request: string | null; tokens: string; last_charge: string | null }>(
    `WITH pruned_grants AS (DELETE FROM api_key_grants WHERE key_id = $1 AND at_ms <= $2),
          pruned_charges AS (DELETE FROM api_key_charges WHERE key_id = $1 AND at_ms <= $2)
     SELECT (SELECT count(*)::int FROM api_key_grants WHERE key_id = $1 AND at_ms > $2) AS requests,
            (SELECT max(at_ms) FROM api_key_grants WHERE key_id = $1 AND at_ms > $2) AS last_request,
            (SELECT COALESCE(sum(tokens), 0) FROM api_key_charges WHERE key_id = $1 AND at_ms > $2) AS tokens,
            (SELECT max(at_ms) FROM api_key_charges WHERE key_id = $1 AND at_ms > $2) AS last_charge`,
    [keyId, cutoff],
  );
  const row = r.rows[0]!;
  return {
    atMs: nowMs,
    requests: row.requests,
    lastRequestAtMs: optionalNumber(row.last_request),
    tokens: Number(row.tokens),
    lastChargeAtMs: optionalNumber(row.last_charge),
  };
}

/**
 * Opens the API key store shared by every coordinator on one PostgreSQL database (`api_keys`,
 * with `api_key_grants` and `api_key_charges` holding each key's last minute of requests and
 * tokens). Secrets are never stored: only their SHA-256. Creating or revoking a key NOTIFYs the
 * other replicas; every lookup reads the database, so a revocation through one coordinator is
 * refused by all at once. Its {@link ApiKeyStore.sharedQuotas} count requests and tokens per
 * minute and the budget for the whole cluster. The caller owns (and closes) `store`.
 *
 * @example
 * ```ts
 * const keys = createApiKeys({ store: openPostgresApiKeyStore({ store: pgStore }), logger });
 * ```
 */
export function openPostgresApiKeyStore(options: PostgresApiKeyStoreOptions): PostgresApiKeyStore {
  const { store } = options;
  const { pool } = store;
  const location = store.location;
  /** Runs `fn`, turning database failures into {@link ApiKeyStoreError} (the store's own errors pass). */
  const guard = async <T>(what: string, fn: () => Promise<T>): Promise<T> => {
    try {
      return await fn();
    } catch (cause) {
      if (cause instanceof CoordinatorError) throw cause;
      throw new ApiKeyStoreError(`API key store ${location}: cannot ${what}: ${(cause as Error).message}`, { location }, { cause });
    }
  };
  const announce = (client: pg.ClientBase, keyId: string) => client.query('SELECT pg_notify($1, $2)', [STORE_CHANNELS.apiKeys, keyId]);
  const unlisteners = new Set<() => void>();

  const sharedQuotas: SharedQuotas = {
    take: (keyId, nowMs) =>
      guard('check a quota', () =>
        store.transaction(async (client): Promise<SharedQuotaTake> => {
          // The key's row lock: every coordinator's take for this key waits its turn here.
          const locked = await client.query<Pick<ApiKeyRow, 'requests_per_minute' | 'tokens_per_minute' | 'budget_tokens' | 'tokens_used'>>(
            'SELECT requests_per_minute, tokens_per_minute, budget_tokens, tokens_used FROM api_keys WHERE id = $1 FOR UPDATE',
            [keyId],
          );
          const key = locked.rows[0];
          if (!key) throw new ApiKeyStoreError(`API key store ${location}: key ${keyId} vanished`, { location, keyId });
          const usage = await windowUsage(client, keyId, nowMs);
          const cutoff = nowMs - RATE_WINDOW_MS;
          const budget = Number(key.budget_tokens);
          const tokensUsed = Number(key.tokens_used);
          if (budget > 0 && tokensUsed >= budget) return { granted: false, quota: 'budget', limit: budget, used: tokensUsed, retryAfterMs: undefined, usage };
          const rpm = key.requests_per_minute;
          if (rpm > 0 && usage.requests >= rpm) {
            // The grant whose leaving the window brings the count below the limit.
            const oldest = await client.query<{ at_ms: string }>(
              'SELECT at_ms FROM api_key_grants WHERE key_id = $1 AND at_ms > $2 ORDER BY at_ms, id OFFSET $3 LIMIT 1',
              [keyId, cutoff, usage.requests - rpm],
            );
            const at = Number(oldest.rows[0]?.at_ms ?? nowMs);
            return { granted: false, quota: 'rpm', limit: rpm, used: usage.requests, retryAfterMs: Math.max(1, at + RATE_WINDOW_MS - nowMs), usage };
          }
          const tpm = key.tokens_per_minute;
          if (tpm > 0 && usage.tokens >= tpm) {
            // The first charge after which the rest of the window sums below the limit.
            const leaving = await client.query<{ at_ms: string }>(
              `SELECT at_ms FROM (SELECT at_ms, id, sum(tokens) OVER (ORDER BY at_ms, id) AS cum FROM api_key_charges WHERE key_id = $1 AND at_ms > $2) w
               WHERE $3 - cum < $4 ORDER BY at_ms, id LIMIT 1`,
              [keyId, cutoff, usage.tokens, tpm],
            );
            const at = Number(leaving.rows[0]?.at_ms ?? nowMs);
            return { granted: false, quota: 'tpm', limit: tpm, used: usage.tokens, retryAfterMs: Math.max(1, at + RATE_WINDOW_MS - nowMs), usage };
          }
          let grantId: string | undefined;
          if (rpm > 0) {
            const inserted = await client.query<{ id: string }>('INSERT INTO api_key_grants (key_id, at_ms) VALUES ($1, $2) RETURNING id', [keyId, nowMs]);
            grantId = inserted.rows[0]?.id;
          }
          return { granted: true, grantId, usage };
        }),
      ),
    giveBack: (grantId) =>
      guard('give a grant back', async () => {
        await pool.query('DELETE FROM api_key_grants WHERE id = $1', [grantId]);
      }),
  };

  return {
    backend: 'postgres',
    location,
    create: (key, nowMs) =>
      guard('create a key', () =>
        store.transaction(async (client) => {
          // One creation per name at a time, cluster-wide (the check below and the insert are one step).
          await client.query("SELECT pg_advisory_xact_lock(hashtext('titan_api_key_name:' || $1))", [key.name]);
          const same = await client.query<ApiKeyRow>(`SELECT ${API_KEY_COLUMNS} FROM api_keys WHERE name = $1`, [key.name]);
          if (same.rows.some((row) => apiKeyState(apiKeyFromRow(row), nowMs) === 'active')) throw new ApiKeyExistsError(key.name);
          const inserted = await client.query<ApiKeyRow>(
            'INSERT INTO api_keys (id, name, prefix, secret_sha256, requests_per_minute, tokens_per_minute, max_concurrent, budget_tokens, models, created_at, expires_at) ' +
              `VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING ${API_KEY_COLUMNS}`,
            [
              key.id,
              key.name,
              key.prefix,
              key.secretSha256,
              key.requestsPerMinute,
              key.tokensPerMinute,
              key.maxConcurrent,
              key.budgetTokens,
              JSON.stringify(key.models),
              key.createdAtMs,
              key.expiresAtMs ?? null,
            ],
          );
          await announce(client, key.id);
          return apiKeyFromRow(inserted.rows[0]!);
        }),
      ),
    findBySecret: (digest) =>
      guard('look a key up', async () => {
        const r = await pool.query<ApiKeyRow>(`SELECT ${API_KEY_COLUMNS} FROM api_keys WHERE secret_sha256 = $1`, [digest]);
        return r.rows[0] ? apiKeyFromRow(r.rows[0]) : undefined;
      }),
    list: () =>
      guard('list keys', async () => {
        const r = await pool.query<ApiKeyRow>(`SELECT ${API_KEY_COLUMNS} FROM api_keys ORDER BY created_at, seq`);
        return r.rows.map(apiKeyFromRow);
      }),
    revoke: (idOrName, nowMs) =>
      guard('revoke a key', () =>
        store.transaction(async (client) => {
          const byId = await client.query<ApiKeyRow>(`SELECT ${API_KEY_COLUMNS} FROM api_keys WHERE id = $1 FOR UPDATE`, [idOrName]);
          let row = byId.rows[0];
          if (!row) {
            const byName = await client.query<ApiKeyRow>(
              `SELECT ${API_KEY_COLUMNS} FROM api_keys WHERE name = $1 ORDER BY created_at DESC, seq DESC FOR UPDATE`,
              [idOrName],
            );
            row = byName.rows.find((r) => r.revoked_at === null) ?? byName.rows[0];
          }
          if (!row) return undefined;
          const updated = await client.query<ApiKeyRow>(
            `UPDATE api_keys SET revoked_at = COALESCE(revoked_at, $2) WHERE id = $1 RETURNING ${API_KEY_COLUMNS}`,
            [row.id, nowMs],
          );
          await announce(client, row.id);
          return apiKeyFromRow(updated.rows[0]!);
        }),
      ),
    recordRequest: (id, atMs) =>
      guard('record a request', async () => {
        await pool.query('UPDATE api_keys SET requests_total = requests_total + 1, last_used_at = GREATEST(COALESCE(last_used_at, 0), $2) WHERE id = $1', [
          id,
          atMs,
        ]);
      }),
    addTokens: (id, tokens, atMs) =>
      guard('charge tokens', async () => {
        await pool.query(
          'WITH charged AS (UPDATE api_keys SET tokens_used = tokens_used + $2 WHERE id = $1 RETURNING id) INSERT INTO api_key_charges (key_id, at_ms, tokens) SELECT id, $3, $2 FROM charged',
          [id, tokens, atMs],
        );
      }),
    sharedQuotas,
    watch(listener) {
      const stop = store.listen(STORE_CHANNELS.apiKeys, () => listener());
      unlisteners.add(stop);
      return () => {
        stop();
        unlisteners.delete(stop);
      };
    },
    async close() {
      for (const stop of unlisteners) stop();
      unlisteners.clear();
    },
  };
}

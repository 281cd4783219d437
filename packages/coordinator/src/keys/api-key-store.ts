import type { ApiKeyRecord, NewApiKey } from './api-key.js';

/**
 * Where API keys and their usage live. Every method is asynchronous so that a PostgreSQL store
 * (several coordinators on one database, `openPostgresApiKeyStore`) implements the same
 * interface as the SQLite store (`openSqliteApiKeyStore`, in the coordinator's `coordinator.db`),
 * which answers at once.
 */
export interface ApiKeyStore {
  /** Which backend (for logs). */
  readonly backend: 'sqlite' | 'postgres';
  /** Where it stores (a file, or a PostgreSQL URL without its password; for logs). */
  readonly location: string;
  /**
   * Inserts a key unless an active key (not revoked, not expired at `nowMs`) has its name:
   * then throws `ApiKeyExistsError`, atomically with the insert.
   */
  create(key: NewApiKey, nowMs: number): Promise<ApiKeyRecord>;
  /** The key whose secret has this SHA-256, whatever its state. */
  findBySecret(secretSha256: Buffer): Promise<ApiKeyRecord | undefined>;
  /** Every key, oldest first. */
  list(): Promise<ApiKeyRecord[]>;
  /**
   * Revokes the key with this id, else the newest not-revoked key with this name (an already
   * revoked key is returned as it is); undefined when none matches.
   */
  revoke(idOrName: string, nowMs: number): Promise<ApiKeyRecord | undefined>;
  /** One more granted request at `atMs` (`requests_total`, `last_used_at`). */
  recordRequest(id: string, atMs: number): Promise<void>;
  /** Charges `tokens` at `atMs` to the key's lifetime usage (`tokens_used`) and, when shared, its sliding minute. */
  addTokens(id: string, tokens: number, atMs: number): Promise<void>;
  /**
   * Present when several coordinators share the store: the requests and tokens per minute and
   * the budget are then counted in the store, for the whole cluster, instead of in memory.
   */
  readonly sharedQuotas?: SharedQuotas;
  /**
   * Calls `listener` when a key was created or revoked through any coordinator sharing the store
   * (so the auth mode follows at once). Absent: only the periodic re-read sees other writers.
   * Returns a function that stops the calls.
   */
  watch?(listener: () => void): () => void;
  close(): Promise<void>;
}

/** A key's use of its sliding minute, as {@link SharedQuotas.take} found it (before its own grant). */
export interface SharedWindowUsage {
  /** When it was measured (ms). */
  atMs: number;
  /** Requests granted in the minute ending at `atMs`, by every coordinator. */
  requests: number;
  /** The newest of those grants (ms), if any. */
  lastRequestAtMs: number | undefined;
  /** Tokens charged in that minute. */
  tokens: number;
  /** The newest of those charges (ms), if any. */
  lastChargeAtMs: number | undefined;
}

/** The outcome of {@link SharedQuotas.take}. */
export type SharedQuotaTake =
  | {
      granted: true;
      /** The recorded grant (give it back with {@link SharedQuotas.giveBack}); undefined when the key has no requests-per-minute limit. */
      grantId: string | undefined;
      usage: SharedWindowUsage;
    }
  | {
      granted: false;
      quota: 'budget' | 'rpm' | 'tpm';
      limit: number;
      used: number;
      /** The true time (ms) until the window lets a request through; undefined for `budget`. */
      retryAfterMs: number | undefined;
      usage: SharedWindowUsage;
    };

/** Cluster-wide quotas of a shared store (see {@link ApiKeyStore.sharedQuotas}). */
export interface SharedQuotas {
  /**
   * In one transaction holding the key's row lock (so coordinators take turns per key): prunes
   * the key's grants and charges older than a minute, checks its budget, requests per minute
   * and tokens per minute (limits as stored now), and when within them records one request grant
   * at `nowMs`.
   */
  take(keyId: string, nowMs: number): Promise<SharedQuotaTake>;
  /** Deletes a grant {@link SharedQuotas.take} recorded (the request was refused after all). */
  giveBack(grantId: string): Promise<void>;
}

/** The `api_keys` columns both stores read, in the order of {@link ApiKeyRow}. */
export const API_KEY_COLUMNS =
  'id, name, prefix, requests_per_minute, tokens_per_minute, max_concurrent, budget_tokens, models, created_at, expires_at, revoked_at, tokens_used, requests_total, last_used_at';

/** A row of {@link API_KEY_COLUMNS}: integers as numbers (SQLite) or as strings (PostgreSQL's BIGINT). */
export interface ApiKeyRow {
  id: string;
  name: string;
  prefix: string;
  requests_per_minute: number;
  tokens_per_minute: number;
  max_concurrent: number;
  budget_tokens: number | string;
  models: string;
  created_at: number | string;
  expires_at: number | string | null;
  revoked_at: number | string | null;
  tokens_used: number | string;
  requests_total: number | string;
  last_used_at: number | string | null;
}

/** A nullable integer column (a number, or PostgreSQL's BIGINT as a string) as a number or undefined. */
export const optionalNumber = (v: number | string | null): number | undefined => (v === null ? undefined : Number(v));

/** The record of an `api_keys` row, from either store. */
export function apiKeyFromRow(row: ApiKeyRow): ApiKeyRecord {
  return {
    id: row.id,
    name: row.name,
    prefix: row.prefix,
    requestsPerMinute: row.requests_per_minute,
    tokensPerMinute: row.tokens_per_minute,
    maxConcurrent: row.max_concurrent,
    budgetTokens: Number(row.budget_tokens),
    models: JSON.parse(row.models) as string[],
    createdAtMs: Number(row.created_at),
    expiresAtMs: optionalNumber(row.expires_at),
    revokedAtMs: optionalNumber(row.revoked_at),
    tokensUsed: Number(row.tokens_used),
    requestsTotal: Number(row.requests_total),
    lastUsedAtMs: optionalNumber(row.last_used_at),
  };
}

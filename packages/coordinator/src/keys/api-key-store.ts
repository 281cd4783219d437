import type { ApiKeyRecord, NewApiKey } from './api-key.js';

/**
 * Where API keys and their usage live. Every method is asynchronous so that a PostgreSQL store
 * (several coordinators on one database) can implement the same interface; the SQLite store
 * (`openSqliteApiKeyStore`, in the coordinator's `coordinator.db`) answers at once.
 */
export interface ApiKeyStore {
  /** Which backend (for logs). */
  readonly backend: 'sqlite';
  /** Where it stores (a file, for logs). */
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
  /** Charges `tokens` to the key's lifetime usage (`tokens_used`). */
  addTokens(id: string, tokens: number): Promise<void>;
  close(): Promise<void>;
}

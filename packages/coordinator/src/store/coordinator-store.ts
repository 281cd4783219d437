import type { Logger } from '@titancompute/server-kit';
import { PostgresStoreError } from '../errors.js';
import { forgetPostgresAgent, openPostgresIdentityStore } from '../identity/postgres-identity-store.js';
import { openIdentityStore, type IdentityStore } from '../identity/identity-store.js';
import type { ApiKeyStore } from '../keys/api-key-store.js';
import { openPostgresApiKeyStore } from '../keys/postgres-api-key-store.js';
import { openSqliteApiKeyStore } from '../keys/sqlite-api-key-store.js';
import { openKeyring, rotateKeyring, type Keyring } from '../tokens/keyring.js';
import { parseKeyringSecret } from '../tokens/keyring-secret.js';
import { openPostgresKeyring, rotatePostgresKeyring } from '../tokens/postgres-keyring.js';
import { openPostgresStore, type PostgresStore } from './postgres-store.js';

/** Values of `--store`: `sqlite` (the default: `<data-dir>/coordinator.db` and `<data-dir>/keys`) or `postgres` (shared by replicas). */
export const STORE_KINDS = ['sqlite', 'postgres'] as const;
/** A value of `--store`. */
export type StoreKind = (typeof STORE_KINDS)[number];

/** Where a coordinator keeps its durable state (see `CoordinatorOptions.store`). */
export interface CoordinatorStoreOptions {
  /** Default `sqlite`. */
  kind?: StoreKind;
  /** The data dir (SQLite's `coordinator.db` and `keys/keyring.json`). */
  dataDir: string;
  /** With `postgres`: `postgres://user[:password]@host:port/database`. */
  postgresUrl?: string | undefined;
  /** With `postgres`: the keyring secret (32 bytes, base64 or hex) that seals the signing keys. */
  keyringSecret?: string | undefined;
  /** Session token lifetime (how long a rotated-out key stays published). */
  tokenTtlMs: number;
  logger?: Logger | undefined;
}

/** A coordinator's durable state, opened: API keys and usage, agent identities, the signing keyring. */
export interface CoordinatorStore {
  readonly kind: StoreKind;
  /** Where it lives (a file, or the PostgreSQL URL without its password). */
  readonly location: string;
  readonly apiKeys: ApiKeyStore;
  readonly identities: IdentityStore;
  readonly keyring: Keyring;
  /** With `postgres`: the connection the replicas share (the shared fleet is opened on it); closed by {@link CoordinatorStore.close}. */
  readonly postgres?: PostgresStore;
  /** Closes all three (in-flight identity writes first) and the PostgreSQL pool. Idempotent. */
  close(): Promise<void>;
}

/** Opens the PostgreSQL store after checking its options (URL, secret) before connecting. */
async function openPostgres(options: CoordinatorStoreOptions): Promise<{ store: PostgresStore; secret: Buffer }> {
  if (!options.postgresUrl?.trim()) {
    throw new PostgresStoreError('--store postgres needs a PostgreSQL URL: set --postgres-url (TITAN_POSTGRES_URL), e.g. postgres://titan@db:5432/titan', {
      operation: 'configure',
    });
  }
  const secret = parseKeyringSecret(options.keyringSecret);
  return { store: await openPostgresStore({ url: options.postgresUrl, logger: options.logger }), secret };
}

/**
 * Opens a coordinator's durable state. `sqlite` (the default, zero set-up): `<dataDir>/coordinator.db`
 * (API keys, agent identities) and `<dataDir>/keys/keyring.json`. `postgres`: one database shared
 * by every replica, migrated at start (`openPostgresStore`), the keyring sealed with the keyring
 * secret. Throws `PostgresStoreError`, `SchemaVersionError`, `KeyringSecretError` or the stores'
 * own errors; nothing stays open then.
 *
 * @example
 * ```ts
 * const store = await openCoordinatorStore({ kind: 'postgres', dataDir, postgresUrl, keyringSecret, tokenTtlMs: 300_000 });
 * const keys = createApiKeys({ store: store.apiKeys, logger });
 * await store.close();
 * ```
 */
export async function openCoordinatorStore(options: CoordinatorStoreOptions): Promise<CoordinatorStore> {
  if ((options.kind ?? 'sqlite') === 'sqlite') {
    const apiKeys = openSqliteApiKeyStore({ dataDir: options.dataDir });
    let identities: IdentityStore | undefined;
    try {
      identities = openIdentityStore({ dataDir: options.dataDir });
      const keyring = await openKeyring({ dataDir: options.dataDir, tokenTtlMs: options.tokenTtlMs });
      const ids = identities;
      return {
        kind: 'sqlite',
        location: apiKeys.location,
        apiKeys,
        identities: ids,
        keyring,
        async close() {
          keyring.close();
          ids.close();
          await apiKeys.close();
        },
      };
    } catch (err) {
      identities?.close();
      await apiKeys.close();
      throw err;
    }
  }
  const { store, secret } = await openPostgres(options);
  try {
    const apiKeys = openPostgresApiKeyStore({ store });
    const identities = await openPostgresIdentityStore({ store, logger: options.logger });
    const keyring = await openPostgresKeyring({ store, secret, tokenTtlMs: options.tokenTtlMs, logger: options.logger });
    let closing: Promise<void> | undefined;
    return {
      kind: 'postgres',
      location: store.location,
      postgres: store,
      apiKeys,
      identities,
      keyring,
      close() {
        closing ??= (async () => {
          keyring.close();
          identities.close();
          await identities.flush();
          await apiKeys.close();
          await store.close();
        })();
        return closing;
      },
    };
  } catch (err) {
    await store.close();
    throw err;
  }
}

/**
 * `rotate-key` against either store: a new current signing key; the old one stays published
 * until its tokens expire. Every running replica on PostgreSQL picks it up at once (NOTIFY).
 */
export async function rotateCoordinatorKey(options: CoordinatorStoreOptions): Promise<{ kid: string; previousKid: string | undefined; location: string }> {
  if ((options.kind ?? 'sqlite') === 'sqlite') {
    const rotated = await rotateKeyring({ dataDir: options.dataDir, tokenTtlMs: options.tokenTtlMs });
    return { ...rotated, location: options.dataDir };
  }
  const { store, secret } = await openPostgres(options);
  try {
    return { ...(await rotatePostgresKeyring({ store, secret, tokenTtlMs: options.tokenTtlMs })), location: store.location };
  } finally {
    await store.close();
  }
}

/**
 * `forget-agent ID` against either store: releases the id's credential binding (every replica on
 * PostgreSQL sees it at once). Returns whether it was bound and where.
 */
export async function forgetCoordinatorAgent(
  options: Omit<CoordinatorStoreOptions, 'keyringSecret'>,
  agentId: string,
): Promise<{ forgotten: boolean; location: string }> {
  if ((options.kind ?? 'sqlite') === 'sqlite') {
    const store = openIdentityStore({ dataDir: options.dataDir });
    try {
      return { forgotten: store.forget(agentId), location: store.file };
    } finally {
      store.close();
    }
  }
  if (!options.postgresUrl?.trim()) {
    throw new PostgresStoreError('--store postgres needs a PostgreSQL URL: set --postgres-url (TITAN_POSTGRES_URL)', { operation: 'configure' });
  }
  const store = await openPostgresStore({ url: options.postgresUrl, logger: options.logger });
  try {
    return { forgotten: await forgetPostgresAgent(store, agentId), location: `${store.location} (agent_identities)` };
  } finally {
    await store.close();
  }
}

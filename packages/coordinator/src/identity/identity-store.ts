import { createHash, timingSafeEqual } from 'node:crypto';
import { chmodSync, closeSync, mkdirSync, openSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { AgentIdentityError, IdentityStoreError, SchemaVersionError } from '../errors.js';

/** Name of the coordinator's SQLite database inside its data dir. */
export const COORDINATOR_DB_FILE = 'coordinator.db';

/** Shortest agent credential accepted (characters); agents generate 43 (32 random bytes, base64url). */
export const MIN_CREDENTIAL_LENGTH = 32;
/** Longest agent credential accepted (characters). */
export const MAX_CREDENTIAL_LENGTH = 512;

/** Where the identity store of a data dir lives. */
export function identityStorePath(dataDir: string): string {
  return join(dataDir, COORDINATOR_DB_FILE);
}

/** SHA-256 of a credential; only this digest is stored or kept in memory. */
export function hashCredential(credential: string): Buffer {
  return createHash('sha256').update(credential, 'utf8').digest();
}

/** What {@link IdentityStore.check} found for an (agent id, credential digest) pair. */
export type IdentityCheck = 'match' | 'mismatch' | 'unbound';

/** One binding, as listed by {@link IdentityStore.list}. */
export interface AgentBinding {
  agentId: string;
  /** Unix ms of the first registration that bound the id. */
  boundAt: number;
}

/**
 * Agent id → SHA-256 of the agent's credential, persisted in `<data-dir>/coordinator.db`
 * (SQLite, WAL, mode 0600), so bindings survive coordinator restarts and an operator's `forget-agent`
 * (another process) is seen within {@link DEFAULT_EXTERNAL_CHANGE_CHECK_MS}. Rows read are cached in
 * memory: a check asks SQLite whether another connection committed since (`PRAGMA data_version`,
 * no table read) at most that often and drops the cache when one did, so a health update costs
 * no SQLite call at all. Binding, forgetting and recording an endpoint always look first. Digests
 * are compared in constant time.
 */
export interface IdentityStore {
  /** The database file. */
  readonly file: string;
  /**
   * Binds `agentId` to the credential if the id is unbound (trust on first use: the join
   * token admitted the caller) and returns `'bound'`; returns `'verified'` when it is already
   * bound to this credential; throws {@link AgentIdentityError} (PERMISSION_DENIED) otherwise.
   */
  bindOrVerify(agentId: string, credentialDigest: Buffer): 'bound' | 'verified';
  /** Compares without binding. */
  check(agentId: string, credentialDigest: Buffer): IdentityCheck;
  /** Throws {@link AgentIdentityError} unless the id is bound to this credential (`unbound` → false). */
  verify(agentId: string, credentialDigest: Buffer): boolean;
  /** Releases an id (the operator replaces an agent machine); false when it was not bound. */
  forget(agentId: string): boolean;
  /**
   * The endpoint the coordinator last verified for this id (grpc health SERVING and GetStatus
   * with this agent_id), so an agent that registers again from the same endpoint, e.g. after a
   * coordinator restart, is routed at once instead of after a new check.
   */
  verifiedEndpoint(agentId: string): string | undefined;
  /** Records a verified endpoint for a bound id (no-op when the id is not bound). */
  rememberVerifiedEndpoint(agentId: string, endpoint: string): void;
  /** Every binding, oldest first. */
  list(): AgentBinding[];
  close(): void;
}

/** Options of {@link openIdentityStore}. */
export interface IdentityStoreOptions {
  /** The coordinator's data dir (created with mode 0700 when missing). */
  dataDir: string;
  /**
   * Longest time (ms) a check answers from memory without asking SQLite whether another process
   * changed a binding; 0 asks on every check. Default {@link DEFAULT_EXTERNAL_CHANGE_CHECK_MS}.
   */
  externalChangeCheckMs?: number;
  /** Clock (ms). Default `Date.now`. */
  now?: () => number;
}

/**
 * Default {@link IdentityStoreOptions.externalChangeCheckMs}: 50 ms. Every SQLite read takes and
 * drops its locks (system calls); health updates of a thousand agents come hundreds of times a
 * second, and a `forget-agent` only needs to be seen before the next one of that agent matters.
 */
export const DEFAULT_EXTERNAL_CHANGE_CHECK_MS = 50;

/** The name of the agent identities' schema in the `schema_versions` table (shared with the API keys). */
export const IDENTITIES_SCHEMA = 'agent_identities';
/** The SQLite schema version of `agent_identities` this coordinator writes (2: `verified_endpoint`). */
export const IDENTITIES_SCHEMA_VERSION = 2;

/** The PERMISSION_DENIED message for an id bound to another credential. */
export function identityMismatchMessage(agentId: string): string {
  return (
    `agent_id "${agentId}" is bound to another agent's credential; an agent can only act for its own id. ` +
    `If this is a replacement machine, release the id on the coordinator (titan-coordinator forget-agent ${agentId} --data-dir <dir>), ` +
    `or give this agent another --agent-id`
  );
}

/**
 * Opens (creating when needed) the identity store of a coordinator data dir.
 *
 * @example
 * ```ts
 * const store = openIdentityStore({ dataDir: './.titan/coordinator' });
 * store.bindOrVerify('gpu-1', hashCredential(credential)); // 'bound' the first time, then 'verified'
 * store.close();
 * ```
 */
export function openIdentityStore(options: IdentityStoreOptions): IdentityStore {
  const file = identityStorePath(options.dataDir);
  let db: Database.Database;
  let opened: Database.Database | undefined;
  try {
    mkdirSync(options.dataDir, { recursive: true, mode: 0o700 });
    // Owner-only (SQLite gives its -wal/-shm files the same mode).
    closeSync(openSync(file, 'a', 0o600));
    chmodSync(file, 0o600);
    db = new Database(file);
    opened = db;
    db.pragma('journal_mode = WAL');
    db.pragma('busy_timeout = 5000');
    db.transaction(() => {
      // Versioned like the API keys: a database a newer coordinator wrote is refused, not misread.
      db.exec('CREATE TABLE IF NOT EXISTS schema_versions (schema TEXT PRIMARY KEY NOT NULL, version INTEGER NOT NULL) WITHOUT ROWID');
      const found = db.prepare<[string], { version: number }>('SELECT version FROM schema_versions WHERE schema = ?').get(IDENTITIES_SCHEMA)?.version ?? 0;
      if (found > IDENTITIES_SCHEMA_VERSION) throw new SchemaVersionError(file, IDENTITIES_SCHEMA, found, IDENTITIES_SCHEMA_VERSION, 'sqlite');
      db.exec(
        'CREATE TABLE IF NOT EXISTS agent_identities (agent_id TEXT PRIMARY KEY NOT NULL, credential_sha256 BLOB NOT NULL, bound_at INTEGER NOT NULL) WITHOUT ROWID',
      );
      const columns = db.prepare<[], { name: string }>('PRAGMA table_info(agent_identities)').all();
      if (!columns.some((c) => c.name === 'verified_endpoint')) db.exec('ALTER TABLE agent_identities ADD COLUMN verified_endpoint TEXT');
      db.prepare('INSERT INTO schema_versions (schema, version) VALUES (?, ?) ON CONFLICT (schema) DO UPDATE SET version = excluded.version').run(
        IDENTITIES_SCHEMA,
        IDENTITIES_SCHEMA_VERSION,
      );
    })();
  } catch (cause) {
    opened?.close();
    if (cause instanceof SchemaVersionError) throw cause;
    throw new IdentityStoreError(`cannot open the identity store ${file}: ${(cause as Error).message}`, { file }, { cause });
  }
  const select = db.prepare<[string], { credential_sha256: Buffer; verified_endpoint: string | null }>(
    'SELECT credential_sha256, verified_endpoint FROM agent_identities WHERE agent_id = ?',
  );
  const insert = db.prepare<[string, Buffer, number]>('INSERT OR IGNORE INTO agent_identities (agent_id, credential_sha256, bound_at) VALUES (?, ?, ?)');
  const remove = db.prepare<[string]>('DELETE FROM agent_identities WHERE agent_id = ?');
  const updateEndpoint = db.prepare<[string, string]>('UPDATE agent_identities SET verified_endpoint = ? WHERE agent_id = ?');
  const all = db.prepare<[], { agent_id: string; bound_at: number }>('SELECT agent_id, bound_at FROM agent_identities ORDER BY bound_at, agent_id');
  const dataVersion = db.prepare<[], number>('PRAGMA data_version').pluck();

  /** Rows read or written by this connection (`undefined`: no row), valid while no other connection commits. */
  const cache = new Map<string, { digest: Buffer; endpoint: string | undefined } | undefined>();
  const now = options.now ?? Date.now;
  const checkEveryMs = options.externalChangeCheckMs ?? DEFAULT_EXTERNAL_CHANGE_CHECK_MS;
  let seenVersion = dataVersion.get();
  let lookedAt = now();
  /**
   * Drops the cache when another connection (e.g. `forget-agent`, the API-key store) committed
   * since the last look; `always`: look now, else only when the last look is older than the window.
   */
  const fresh = (always = false) => {
    if (!always && checkEveryMs > 0) {
      const t = now();
      if (t - lookedAt < checkEveryMs && t >= lookedAt) return;
      lookedAt = t;
    }
    const version = dataVersion.get();
    if (version !== seenVersion) {
      seenVersion = version;
      cache.clear();
    }
  };
  const rowOf = (agentId: string) => {
    fresh();
    if (cache.has(agentId)) return cache.get(agentId);
    const row = select.get(agentId);
    const entry = row ? { digest: row.credential_sha256, endpoint: row.verified_endpoint ?? undefined } : undefined;
    cache.set(agentId, entry);
    return entry;
  };

  const guard = <T>(what: string, fn: () => T): T => {
    try {
      return fn();
    } catch (cause) {
      if (cause instanceof AgentIdentityError) throw cause;
      throw new IdentityStoreError(`identity store ${file}: cannot ${what}: ${(cause as Error).message}`, { file }, { cause });
    }
  };
  const same = (stored: Buffer, digest: Buffer) => stored.length === digest.length && timingSafeEqual(stored, digest);
  const check = (agentId: string, digest: Buffer): IdentityCheck =>
    guard('read a binding', () => {
      const row = rowOf(agentId);
      if (!row) return 'unbound';
      return same(row.digest, digest) ? 'match' : 'mismatch';
    });

  return {
    file,
    bindOrVerify(agentId, digest) {
      return guard('bind an agent id', () => {
        // INSERT OR IGNORE then read back: two first registrations racing cannot both win.
        fresh(true);
        const inserted = insert.run(agentId, digest, Date.now()).changes === 1;
        if (inserted) {
          cache.set(agentId, { digest: Buffer.from(digest), endpoint: undefined });
          return 'bound';
        }
        cache.delete(agentId);
        if (check(agentId, digest) === 'match') return 'verified';
        throw new AgentIdentityError(agentId, identityMismatchMessage(agentId));
      });
    },
    check,
    verify(agentId, digest) {
      const found = check(agentId, digest);
      if (found === 'mismatch') throw new AgentIdentityError(agentId, identityMismatchMessage(agentId));
      return found === 'match';
    },
    forget(agentId) {
      return guard('forget an agent id', () => {
        fresh(true);
        cache.delete(agentId);
        return remove.run(agentId).changes === 1;
      });
    },
    verifiedEndpoint(agentId) {
      return guard('read a verified endpoint', () => rowOf(agentId)?.endpoint);
    },
    rememberVerifiedEndpoint(agentId, endpoint) {
      guard('record a verified endpoint', () => {
        fresh(true);
        updateEndpoint.run(endpoint, agentId);
        cache.delete(agentId);
      });
    },
    list() {
      return guard('list bindings', () => all.all().map((r) => ({ agentId: r.agent_id, boundAt: r.bound_at })));
    },
    close() {
      if (db.open) db.close();
    },
  };
}

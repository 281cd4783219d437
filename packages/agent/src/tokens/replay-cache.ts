import { chmodSync, closeSync, openSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { ReplayStoreError } from '../errors.js';

/** Outcome of {@link ReplayCache.claim}. */
export type ClaimOutcome = 'ok' | 'replayed' | 'full';

/**
 * Remembers token ids (jti) until they expire, so each is accepted once. Bounded: when full
 * even after dropping expired entries, `claim` refuses (never forgets a live jti early).
 */
export interface ReplayCache {
  /**
   * Records `jti` as used until `expiresAtMs`. `ok`: recorded (durably, for a persistent cache,
   * before this returns); `replayed`: already used and not expired; `full`: no room for it.
   */
  claim(jti: string, expiresAtMs: number): ClaimOutcome;
  /** Number of remembered ids (expired ones may be counted until the next prune). */
  readonly size: number;
  /** Releases the cache's resources (closes the database). Idempotent. */
  close(): void;
}

/** Options common to both caches. */
export interface ReplayCacheOptions {
  /** Most live ids remembered. Default 100 000. */
  maxEntries?: number;
  /** Clock (Unix ms). Default `Date.now`. */
  now?: () => number;
  /** Least time between two sweeps of expired ids. Default 1000 ms. */
  pruneIntervalMs?: number;
}

/** Creates an in-memory {@link ReplayCache} (lost on exit) holding at most `maxEntries` live ids. */
export function createReplayCache(options: ReplayCacheOptions = {}): ReplayCache {
  const maxEntries = options.maxEntries ?? 100_000;
  const now = options.now ?? Date.now;
  const pruneIntervalMs = options.pruneIntervalMs ?? 1000;
  const seen = new Map<string, number>();
  let nextPrune = 0;
  const prune = () => {
    const t = now();
    for (const [jti, exp] of seen) if (exp <= t) seen.delete(jti);
    nextPrune = t + pruneIntervalMs;
  };
  return {
    get size() {
      return seen.size;
    },
    claim(jti, expiresAtMs) {
      const exp = seen.get(jti);
      if (exp !== undefined && exp > now()) return 'replayed';
      if (seen.size >= maxEntries || now() >= nextPrune) prune();
      if (seen.size >= maxEntries) return 'full';
      seen.set(jti, expiresAtMs);
      return 'ok';
    },
    close() {
      seen.clear();
    },
  };
}

/** File name of the persistent replay cache inside the agent's data dir. */
export const REPLAY_DB_FILE = 'used-tokens.sqlite';

/** Options of {@link openPersistentReplayCache}. */
export interface PersistentReplayCacheOptions extends ReplayCacheOptions {
  /** The agent's data dir (must exist); the database is `<dataDir>/used-tokens.sqlite`, mode 0600. */
  dataDir: string;
}

/**
 * Opens (creating it if needed) a {@link ReplayCache} persisted in SQLite (WAL) in the agent's
 * data dir, so used tokens stay used across restarts and SIGKILL. Each `claim` is one atomic
 * statement committed before it returns: an id is recorded when it was not there or had
 * expired, and never twice, even with two processes on the same file. Expired ids are deleted at
 * most once per `pruneIntervalMs`; when `maxEntries` live ids are stored, `claim` answers `full`.
 * Throws {@link ReplayStoreError} when the file cannot be opened (corrupt, not writable): an
 * agent that cannot remember used tokens must not start.
 *
 * @example
 * ```ts
 * const cache = openPersistentReplayCache({ dataDir: '/data' });
 * cache.claim(jti, expMs); // 'ok' the first time, 'replayed' after, even after a restart
 * cache.close();
 * ```
 */
export function openPersistentReplayCache(options: PersistentReplayCacheOptions): ReplayCache {
  const file = join(options.dataDir, REPLAY_DB_FILE);
  const maxEntries = options.maxEntries ?? 100_000;
  const now = options.now ?? Date.now;
  const pruneIntervalMs = options.pruneIntervalMs ?? 1000;
  let db: Database.Database;
  try {
    closeSync(openSync(file, 'a', 0o600));
    chmodSync(file, 0o600);
    db = new Database(file);
    db.pragma('journal_mode = WAL');
    // FULL: a recorded jti survives a crash of the process and of the machine (one fsync per accepted token).
    db.pragma('synchronous = FULL');
    db.pragma('busy_timeout = 5000');
    db.exec(
      'CREATE TABLE IF NOT EXISTS used_tokens (jti TEXT PRIMARY KEY, expires_at_ms INTEGER NOT NULL) WITHOUT ROWID;' +
        'CREATE INDEX IF NOT EXISTS used_tokens_expiry ON used_tokens (expires_at_ms);',
    );
  } catch (cause) {
    throw new ReplayStoreError(`cannot open the used-token store ${file}: ${(cause as Error).message}`, { file }, { cause });
  }
  // One statement: inserts a new id, or takes over an expired row; a live row is left alone (0 changes).
  const claimStmt = db.prepare(
    'INSERT INTO used_tokens (jti, expires_at_ms) VALUES (?, ?) ON CONFLICT (jti) DO UPDATE SET expires_at_ms = excluded.expires_at_ms WHERE used_tokens.expires_at_ms <= ?',
  );
  const pruneStmt = db.prepare('DELETE FROM used_tokens WHERE expires_at_ms <= ?');
  const countStmt = db.prepare('SELECT count(*) AS n FROM used_tokens').pluck();
  const liveStmt = db.prepare('SELECT 1 FROM used_tokens WHERE jti = ? AND expires_at_ms > ?').pluck();
  let count = countStmt.get() as number;
  let nextPrune = 0;
  let closed = false;
  const prune = (t: number) => {
    pruneStmt.run(t);
    count = countStmt.get() as number;
    nextPrune = t + pruneIntervalMs;
  };
  return {
    get size() {
      return count;
    },
    claim(jti, expiresAtMs) {
      if (closed) throw new ReplayStoreError('the used-token store is closed', { file });
      const t = now();
      try {
        if (count >= maxEntries || t >= nextPrune) prune(t);
        if (count >= maxEntries) return liveStmt.get(jti, t) === undefined ? 'full' : 'replayed';
        const { changes } = claimStmt.run(jti, Math.round(expiresAtMs), t);
        if (changes === 0) return 'replayed';
        count++;
        return 'ok';
      } catch (cause) {
        throw new ReplayStoreError(`cannot record a used session token in ${file}: ${(cause as Error).message}`, { file }, { cause });
      }
    },
    close() {
      if (closed) return;
      closed = true;
      db.close();
    },
  };
}

import { chmodSync, closeSync, fsync, fsyncSync, openSync } from 'node:fs';
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
   * Records `jti` as used until `expiresAtMs`. `ok`: recorded (for a persistent cache: committed,
   * so no other claim of it, in this process or another, is `ok`; durable once
   * {@link ReplayCache.whenDurable} resolves); `replayed`: already used and not expired; `full`:
   * no room for it.
   */
  claim(jti: string, expiresAtMs: number): ClaimOutcome;
  /**
   * Resolves once every claim made so far survives a crash of the machine (at once for the
   * in-memory cache). Claims made while one flush to disk is under way share the next one (group
   * commit), and the disk is flushed off the event loop. Rejects with {@link ReplayStoreError}
   * when the store cannot flush (or was closed first).
   */
  whenDurable(): Promise<void>;
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

const durableNow = Promise.resolve();

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
    whenDurable: () => durableNow,
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
 * data dir, so used tokens stay used across restarts, SIGKILL and power loss. Each `claim` is one
 * atomic statement committed before it returns: an id is recorded when it was not there or had
 * expired, and never twice, even with two processes on the same file. The commit does not wait
 * for the disk (`synchronous = NORMAL`); {@link ReplayCache.whenDurable} then fsyncs the
 * write-ahead log on libuv's thread pool, once for every claim made before that fsync started
 * (group commit): the event loop never waits on the disk, and streams admitted together share
 * one flush. Expired ids are deleted at most once per `pruneIntervalMs` (the count follows the
 * deletions, and is read from the file again only when the store looks full); when `maxEntries`
 * live ids are stored, `claim` answers `full`. Throws {@link ReplayStoreError} when the file
 * cannot be opened (corrupt, not writable): an agent that cannot remember used tokens must not
 * start.
 *
 * @example
 * ```ts
 * const cache = openPersistentReplayCache({ dataDir: '/data' });
 * if (cache.claim(jti, expMs) === 'ok') await cache.whenDurable(); // 'replayed' after, even after a restart or a power cut
 * cache.close();
 * ```
 */
export function openPersistentReplayCache(options: PersistentReplayCacheOptions): ReplayCache {
  const file = join(options.dataDir, REPLAY_DB_FILE);
  const walFile = `${file}-wal`;
  const maxEntries = options.maxEntries ?? 100_000;
  const now = options.now ?? Date.now;
  const pruneIntervalMs = options.pruneIntervalMs ?? 1000;
  let db: Database.Database;
  try {
    closeSync(openSync(file, 'a', 0o600));
    chmodSync(file, 0o600);
    db = new Database(file);
    db.pragma('journal_mode = WAL');
    // NORMAL: a commit is written to the WAL without an fsync; whenDurable() fsyncs the WAL off the
    // event loop (and SQLite syncs the WAL before, and the database after, each checkpoint).
    db.pragma('synchronous = NORMAL');
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
  /** Claims committed so far, and how many of them are known to be on disk. */
  let claimed = 0;
  let durable = 0;
  /** Descriptor of the WAL file, opened on the first flush (the file exists once something was written). */
  let walFd: number | undefined;
  let flushing = false;
  /** Callers of whenDurable, in order of the claim count they wait for. */
  const waiters: { upTo: number; resolve: () => void; reject: (error: unknown) => void }[] = [];

  const storeError = (cause: unknown) =>
    new ReplayStoreError(`cannot flush the used-token store ${file} to disk: ${(cause as Error).message}`, { file }, { cause });
  /** Settles the waiters covered by a flush of the first `upTo` claims. */
  const settle = (upTo: number, error: unknown) => {
    while (waiters.length > 0 && waiters[0]!.upTo <= upTo) {
      const w = waiters.shift()!;
      if (error === undefined) w.resolve();
      else w.reject(error);
    }
  };
  /** Starts an fsync of the WAL covering every claim so far, unless one is under way (its end starts the next). */
  const flush = () => {
    if (flushing || closed || waiters.length === 0) return;
    const upTo = claimed;
    let fd: number;
    try {
      walFd ??= openSync(walFile, 'r');
      fd = walFd;
    } catch (cause) {
      settle(upTo, storeError(cause));
      return;
    }
    flushing = true;
    fsync(fd, (err) => {
      flushing = false;
      if (closed) {
        // close() settled every waiter; the descriptor was left open for this fsync.
        closeSync(fd);
        return;
      }
      if (!err) durable = Math.max(durable, upTo);
      settle(upTo, err ? storeError(err) : undefined);
      flush();
    });
  };
  const prune = (t: number) => {
    count = Math.max(0, count - pruneStmt.run(t).changes);
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
        if (t >= nextPrune) prune(t);
        if (count >= maxEntries) {
          // Looks full: count again (another process on the same file may have added or deleted ids).
          prune(t);
          count = countStmt.get() as number;
          if (count >= maxEntries) return liveStmt.get(jti, t) === undefined ? 'full' : 'replayed';
        }
        const { changes } = claimStmt.run(jti, Math.round(expiresAtMs), t);
        if (changes === 0) return 'replayed';
        count++;
        claimed++;
        return 'ok';
      } catch (cause) {
        throw new ReplayStoreError(`cannot record a used session token in ${file}: ${(cause as Error).message}`, { file }, { cause });
      }
    },
    whenDurable() {
      if (closed) return Promise.reject(new ReplayStoreError('the used-token store is closed', { file }));
      if (durable >= claimed) return durableNow;
      return new Promise<void>((resolve, reject) => {
        waiters.push({ upTo: claimed, resolve, reject });
        flush();
      });
    },
    close() {
      if (closed) return;
      closed = true;
      // What was claimed reaches the disk before the store closes (the last connection's checkpoint would too, but
      // another process may still hold the file).
      let error: unknown;
      if (durable < claimed) {
        try {
          fsyncSync((walFd ??= openSync(walFile, 'r')));
        } catch (cause) {
          error = storeError(cause);
        }
      }
      settle(claimed, error);
      if (walFd !== undefined && !flushing) closeSync(walFd);
      db.close();
    },
  };
}

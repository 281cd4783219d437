import { timingSafeEqual } from 'node:crypto';
import type { Logger } from '@titancompute/server-kit';
import { AgentIdentityError, CoordinatorError, IdentityStoreError } from '../errors.js';
import { STORE_CHANNELS, type PostgresStore } from '../store/postgres-store.js';
import { identityMismatchMessage, type AgentBinding, type IdentityCheck, type IdentityStore } from './identity-store.js';

/** Options of {@link openPostgresIdentityStore}. */
export interface PostgresIdentityStoreOptions {
  store: PostgresStore;
  /** Where failed writes and re-reads are logged. */
  logger?: Logger | undefined;
  /** Clock (ms) of `bound_at`. Default `Date.now`. */
  now?: () => number;
}

/** The identity store on PostgreSQL, plus what the coordinator awaits at shutdown. */
export interface PostgresIdentityStore extends IdentityStore {
  /** Waits for the writes still in flight (bindings, endpoints, releases). */
  flush(): Promise<void>;
}

interface Entry {
  digest: Buffer;
  endpoint: string | undefined;
  boundAt: number;
}

interface Row {
  agent_id: string;
  credential_sha256: Buffer;
  bound_at: string;
  verified_endpoint: string | null;
}

const toEntry = (row: Row): Entry => ({ digest: row.credential_sha256, endpoint: row.verified_endpoint ?? undefined, boundAt: Number(row.bound_at) });

/**
 * Agent id → credential digest shared by every replica in PostgreSQL (`agent_identities`).
 * {@link IdentityStore} is synchronous (health updates check it from memory), so every row is
 * kept in memory: read whole at open, and re-read row by row when another replica announces a
 * change (LISTEN/NOTIFY; the whole table after the LISTEN connection came back). Writes go
 * through at once: a first binding is INSERT … ON CONFLICT DO NOTHING then read back, so when
 * two replicas bind one id to different credentials at the same moment, the database keeps one,
 * and the other replica's agent is refused (PERMISSION_DENIED) from its next health update on.
 * `forget-agent --store postgres` releases an id on every replica within one notification.
 *
 * @example
 * ```ts
 * const identities = await openPostgresIdentityStore({ store });
 * identities.bindOrVerify('gpu-1', hashCredential(credential));
 * await identities.flush();
 * ```
 */
export async function openPostgresIdentityStore(options: PostgresIdentityStoreOptions): Promise<PostgresIdentityStore> {
  const { store, logger } = options;
  const now = options.now ?? Date.now;
  const file = `${store.location} (agent_identities)`;
  const entries = new Map<string, Entry>();
  const readAll = async () => {
    const rows = await store.pool.query<Row>('SELECT agent_id, credential_sha256, bound_at, verified_endpoint FROM agent_identities');
    entries.clear();
    for (const row of rows.rows) entries.set(row.agent_id, toEntry(row));
  };
  const readOne = async (agentId: string) => {
    const rows = await store.pool.query<Row>('SELECT agent_id, credential_sha256, bound_at, verified_endpoint FROM agent_identities WHERE agent_id = $1', [
      agentId,
    ]);
    const row = rows.rows[0];
    if (row) entries.set(agentId, toEntry(row));
    else entries.delete(agentId);
  };
  try {
    await readAll();
  } catch (cause) {
    throw new IdentityStoreError(`cannot read the identity store ${file}: ${(cause as Error).message}`, { file }, { cause });
  }

  const pending = new Set<Promise<unknown>>();
  /** Runs a write in the background (the interface is synchronous), logged when it fails, awaited by flush(). */
  const background = (what: string, agentId: string, work: () => Promise<unknown>) => {
    const p = work()
      .catch((err: unknown) => logger?.error({ err, agentId, store: file }, `identity store: cannot ${what}`))
      .finally(() => pending.delete(p));
    pending.add(p);
  };
  const announce = (agentId: string) => store.pool.query('SELECT pg_notify($1, $2)', [STORE_CHANNELS.identities, agentId]);
  const unlisten = store.listen(STORE_CHANNELS.identities, (agentId) =>
    background('re-read a binding', agentId, () => (agentId === '' ? readAll() : readOne(agentId))),
  );

  const same = (stored: Buffer, digest: Buffer) => stored.length === digest.length && timingSafeEqual(stored, digest);
  const check = (agentId: string, digest: Buffer): IdentityCheck => {
    const entry = entries.get(agentId);
    if (!entry) return 'unbound';
    return same(entry.digest, digest) ? 'match' : 'mismatch';
  };
  const guard = <T>(what: string, fn: () => T): T => {
    try {
      return fn();
    } catch (cause) {
      if (cause instanceof CoordinatorError) throw cause;
      throw new IdentityStoreError(`identity store ${file}: cannot ${what}: ${(cause as Error).message}`, { file }, { cause });
    }
  };

  return {
    file,
    bindOrVerify(agentId, digest) {
      return guard('bind an agent id', () => {
        const found = check(agentId, digest);
        if (found === 'match') return 'verified';
        if (found === 'mismatch') throw new AgentIdentityError(agentId, identityMismatchMessage(agentId));
        const boundAt = now();
        entries.set(agentId, { digest: Buffer.from(digest), endpoint: undefined, boundAt });
        background('bind an agent id', agentId, async () => {
          const inserted = await store.pool.query(
            'INSERT INTO agent_identities (agent_id, credential_sha256, bound_at) VALUES ($1, $2, $3) ON CONFLICT (agent_id) DO NOTHING',
            [agentId, digest, boundAt],
          );
          if (inserted.rowCount === 1) await announce(agentId);
          // Another replica bound it first: keep what the database holds.
          else await readOne(agentId);
        });
        return 'bound';
      });
    },
    check,
    verify(agentId, digest) {
      const found = check(agentId, digest);
      if (found === 'mismatch') throw new AgentIdentityError(agentId, identityMismatchMessage(agentId));
      return found === 'match';
    },
    forget(agentId) {
      const known = entries.delete(agentId);
      background('forget an agent id', agentId, async () => {
        await store.pool.query('DELETE FROM agent_identities WHERE agent_id = $1', [agentId]);
        await announce(agentId);
      });
      return known;
    },
    verifiedEndpoint: (agentId) => entries.get(agentId)?.endpoint,
    rememberVerifiedEndpoint(agentId, endpoint) {
      const entry = entries.get(agentId);
      if (!entry) return;
      entry.endpoint = endpoint;
      background('record a verified endpoint', agentId, async () => {
        await store.pool.query('UPDATE agent_identities SET verified_endpoint = $2 WHERE agent_id = $1', [agentId, endpoint]);
        await announce(agentId);
      });
    },
    list: () =>
      [...entries]
        .map(([agentId, e]) => ({ agentId, boundAt: e.boundAt }) satisfies AgentBinding)
        .sort((a, b) => a.boundAt - b.boundAt || (a.agentId < b.agentId ? -1 : 1)),
    async flush() {
      while (pending.size > 0) await Promise.all([...pending]);
    },
    close() {
      unlisten();
    },
  };
}

/**
 * Releases an agent id in PostgreSQL (`titan-coordinator forget-agent ID --store postgres`) and
 * tells every replica (NOTIFY). Returns false when the id was not bound.
 */
export async function forgetPostgresAgent(store: PostgresStore, agentId: string): Promise<boolean> {
  const deleted = await store.pool.query('DELETE FROM agent_identities WHERE agent_id = $1', [agentId]);
  await store.pool.query('SELECT pg_notify($1, $2)', [STORE_CHANNELS.identities, agentId]);
  return deleted.rowCount === 1;
}

import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import type pg from 'pg';
import type { HealthUpdate } from '@titancompute/protocol';
import type { Logger } from '@titancompute/server-kit';
import { CoordinatorError, FleetStoreError } from '../errors.js';
import { STORE_CHANNELS, type PostgresStore } from '../store/postgres-store.js';
import type { AgentRecord } from './agent-record.js';
import type { AgentRegistry } from './agent-registry.js';
import type { FleetSnapshot, FleetStore, SharedAgentView, SharedGrant } from './fleet-store.js';
import {
  applyJobTransitions,
  dropAgentJobs,
  expireShared,
  releaseShared,
  reserveShared,
  type JobTransition,
  type SharedLoadRow,
} from './postgres-shared-reservations.js';

/** Default {@link PostgresFleetStoreOptions.flushIntervalMs}. */
export const DEFAULT_FLEET_FLUSH_INTERVAL_MS = 100;
/** Default {@link PostgresFleetStoreOptions.sweepIntervalMs}. */
export const DEFAULT_FLEET_SWEEP_INTERVAL_MS = 250;
/** Largest NOTIFY payload sent (PostgreSQL's limit is 8000 bytes). */
const MAX_PAYLOAD = 7000;
/** Transactions that lost a deadlock or a serialization conflict are retried this often. */
const RETRIES = 4;

/** Options of {@link openPostgresFleetStore}. */
export interface PostgresFleetStoreOptions {
  /** The coordinator's PostgreSQL store (migrated); not closed by this one. */
  store: PostgresStore;
  registry: AgentRegistry;
  /** An agent not heard of (by its home replica) for this long is evicted everywhere. */
  heartbeatTimeoutMs: number;
  /** How long a reservation holds a slot (the registry's claim window). */
  claimWindowMs: number;
  /**
   * How often pending health snapshots are written, in one transaction, and the changed agents
   * announced. Updates that change jobs are written at once (and acked after). Default 100 ms.
   */
  flushIntervalMs?: number;
  /** How often expired reservations and silent agents are swept from the database. Default 250 ms (at most a quarter of the heartbeat timeout). */
  sweepIntervalMs?: number;
  /** This replica's id. Default `<hostname>-<pid>-<random>`. */
  replicaId?: string;
  logger?: Logger | undefined;
  /** Clock (ms) of claim windows. Default `Date.now`. */
  now?: () => number;
}

interface ViewRow {
  agent_id: string;
  snapshot: FleetSnapshot;
  home_replica: string | null;
  last_seen_ms: string;
  reserved: number;
  version: string;
}

const VIEW_SELECT =
  'SELECT a.agent_id, a.snapshot, a.home_replica, a.last_seen_ms, l.reserved, l.version FROM fleet_agents a JOIN fleet_load l ON l.agent_id = a.agent_id';

/** What an agent's record says for the shared fleet. */
export function fleetSnapshotOf(r: AgentRecord): FleetSnapshot {
  return {
    registration: {
      agentId: r.agentId,
      endpoint: r.endpoint,
      httpEndpoint: r.httpEndpoint,
      totalVramMb: r.totalVramMb,
      totalRamMb: r.totalRamMb,
      maxJobs: r.maxJobs,
      maxQueue: r.maxQueue,
      supportedModels: [...r.supportedModels],
      capabilities: r.capabilities,
      gpus: r.gpus,
      engine: r.engine,
    },
    health: {
      freeVramMb: r.freeVramMb,
      freeRamMb: r.freeRamMb,
      totalRamMb: r.totalRamMb,
      runningJobs: r.runningJobs,
      queuedJobs: r.queuedJobs,
      cpuPercent: r.cpuPercent,
      rttMs: r.rttMs,
      gpus: r.gpus,
    },
    online: r.online,
    deregistered: r.deregistered,
    draining: r.draining,
    endpointCheck: r.endpointCheck,
    breaker: r.breaker.snapshot(),
    tokensPerSecond: r.tokensPerSecond ?? null,
  };
}

/** Whether the agent takes work (the database's `fleet_load.accepting`). */
const acceptingOf = (r: AgentRecord) => r.online && !r.deregistered && !r.draining;

/** Whether a PostgreSQL error is a lost deadlock or serialization conflict (worth retrying). */
const retryable = (err: unknown) => {
  const code = (err as { code?: string }).code;
  return code === '40P01' || code === '40001';
};

/**
 * Opens the PostgreSQL fleet store: the agent registry's shared facts for coordinator replicas on
 * one database. Tables (migration 2): `fleet_agents` (each agent's registration and latest health
 * as a JSON snapshot, its home replica, when it was last heard of), `fleet_load` (slots, running,
 * reserved: what reservations are checked against) and `fleet_jobs` (granted jobs: reserved, then
 * started).
 *
 * - **Writes**: the replica an agent's health stream is homed on marks its snapshot dirty on every
 *   update and writes all dirty snapshots in one transaction per flush interval (100 ms), with the
 *   jobs the agents reported (a started job's reservation ends in the transaction that raises
 *   `running`), then NOTIFYs the agent ids. Updates that change jobs are flushed at once and acked after.
 * - **Reads**: every replica keeps every agent in its registry; a NOTIFY (payload: agent ids) makes it
 *   re-read those rows, so its view of load is at most one flush interval (plus a round trip) stale.
 *   After the LISTEN connection failed, it re-reads everything.
 * - **Reservations**: taken atomically in the database (`postgres-shared-reservations.ts`); expired
 *   ones are swept by every replica (idempotent).
 * - **Eviction**: an agent whose `last_seen_ms` is older than the heartbeat timeout (its home replica
 *   died and it did not re-home, or it went silent) is deleted by whichever replica sweeps first;
 *   every replica then evicts it.
 *
 * @example
 * ```ts
 * const fleet = openPostgresFleetStore({ store, registry, heartbeatTimeoutMs: 30_000, claimWindowMs: 10_000 });
 * await fleet.start();
 * await fleet.stop();
 * ```
 */
export function openPostgresFleetStore(options: PostgresFleetStoreOptions): FleetStore {
  const { store, registry, logger } = options;
  const { pool, location } = store;
  const now = options.now ?? Date.now;
  const replicaId = options.replicaId ?? `${hostname()}-${process.pid}-${randomBytes(3).toString('hex')}`;
  const flushIntervalMs = options.flushIntervalMs ?? DEFAULT_FLEET_FLUSH_INTERVAL_MS;
  const sweepIntervalMs = Math.max(10, Math.min(options.sweepIntervalMs ?? DEFAULT_FLEET_SWEEP_INTERVAL_MS, Math.floor(options.heartbeatTimeoutMs / 4)));

  /** Snapshots to write at the next flush (agents this replica speaks for). */
  let dirty = new Map<string, AgentRecord>();
  /** Jobs reported since the last flush, by job id (an ended job is never also started). */
  let transitions = new Map<string, JobTransition>();
  /** Agents whose load this replica changed outside a flush (reservations): announced at the next flush. */
  let touched = new Set<string>();
  /** Resolved after the flush that wrote what was pending when they were added. */
  let waiters: (() => void)[] = [];
  /** Each homed agent's last `active_job_ids`: a job it no longer lists has ended. */
  const lastActive = new Map<string, Set<string>>();
  let flushTimer: NodeJS.Timeout | undefined;
  let sweepTimer: NodeJS.Timeout | undefined;
  let flushing: Promise<void> | undefined;
  let soon: NodeJS.Immediate | undefined;
  let unlisten: (() => void) | undefined;
  let stopped = false;

  const fail = (operation: string, cause: unknown, context: Record<string, unknown> = {}) =>
    cause instanceof CoordinatorError
      ? cause
      : new FleetStoreError(`shared fleet ${location}: cannot ${operation}: ${(cause as Error).message}`, { location, operation, ...context }, { cause });

  /** Runs `fn` in a transaction, again when it lost a deadlock. */
  const transaction = async <T>(fn: (client: pg.PoolClient) => Promise<T>): Promise<T> => {
    for (let attempt = 1; ; attempt++) {
      try {
        return await store.transaction(fn);
      } catch (err) {
        if (attempt >= RETRIES || !retryable(err)) throw err;
      }
    }
  };

  /** NOTIFY payloads `<replica>|id,id…`, each under the size limit. */
  const payloads = (ids: Iterable<string>): string[] => {
    const out: string[] = [];
    let current = '';
    for (const id of ids) {
      if (current.length + id.length + 1 > MAX_PAYLOAD) {
        out.push(`${replicaId}|${current}`);
        current = '';
      }
      current = current === '' ? id : `${current},${id}`;
    }
    if (current !== '') out.push(`${replicaId}|${current}`);
    return out;
  };
  const announce = async (db: pg.ClientBase | pg.Pool, ids: Iterable<string>) => {
    for (const payload of payloads(ids)) await db.query('SELECT pg_notify($1, $2)', [STORE_CHANNELS.fleet, payload]);
  };
  const applyLoads = (rows: readonly SharedLoadRow[]) => {
    for (const row of rows) registry.applySharedLoad(row.agentId, row.reserved, row.version);
  };

  // ---- reading other replicas' changes -------------------------------------------------------
  let toRead = new Set<string>();
  let readAll = false;
  let reading: Promise<void> | undefined;
  let readTimer: NodeJS.Immediate | undefined;
  const applyView = (row: ViewRow) => {
    const view: SharedAgentView = {
      agentId: row.agent_id,
      snapshot: row.snapshot,
      homeReplica: row.home_replica,
      lastSeenMs: Number(row.last_seen_ms),
      reserved: row.reserved,
      loadVersion: Number(row.version),
    };
    const record = registry.get(view.agentId);
    // Its health stream is here: this replica is the source of its snapshot; only the cluster's reservations are news.
    if (record && record.streamId !== undefined) registry.applySharedLoad(view.agentId, view.reserved, view.loadVersion);
    else registry.applyShared(view);
  };
  const readNow = async () => {
    const all = readAll;
    const ids = [...toRead];
    readAll = false;
    toRead = new Set();
    const r = all ? await pool.query<ViewRow>(VIEW_SELECT) : await pool.query<ViewRow>(`${VIEW_SELECT} WHERE a.agent_id = ANY($1)`, [ids]);
    const found = new Set<string>();
    for (const row of r.rows) {
      found.add(row.agent_id);
      applyView(row);
    }
    // Gone from the database: evicted (or dropped) by some replica.
    const gone = all ? registry.list().map((rec) => rec.agentId) : ids;
    for (const id of gone) if (!found.has(id)) evictLocally(id);
  };
  const scheduleRead = () => {
    if (readTimer || stopped) return;
    readTimer = setImmediate(() => {
      readTimer = undefined;
      if (reading) {
        void reading.then(scheduleRead);
        return;
      }
      reading = readNow()
        .catch((err: unknown) => {
          logger?.warn({ err: fail('read agents', err), store: location }, 'could not re-read shared agents; retrying');
          readAll = true;
          setTimeout(scheduleRead, 250).unref();
        })
        .finally(() => {
          reading = undefined;
        });
    });
  };
  const onNotify = (payload: string) => {
    if (payload === '') {
      readAll = true;
      scheduleRead();
      return;
    }
    const bar = payload.indexOf('|');
    if (payload.slice(0, bar) === replicaId) return;
    for (const id of payload.slice(bar + 1).split(',')) if (id !== '') toRead.add(id);
    scheduleRead();
  };
  const evictLocally = (agentId: string) => {
    lastActive.delete(agentId);
    dirty.delete(agentId);
    registry.evict(agentId);
  };

  // ---- writing this replica's agents ---------------------------------------------------------
  const hasPending = () => dirty.size > 0 || transitions.size > 0 || touched.size > 0;
  const flushOnce = async () => {
    const batch = dirty;
    const jobs = [...transitions.values()];
    const notify = touched;
    const done = waiters;
    dirty = new Map();
    transitions = new Map();
    touched = new Set();
    waiters = [];
    try {
      const loads = await transaction(async (client) => {
        const records = [...batch.values()];
        const written = new Set<string>();
        if (records.length > 0) {
          // Homed here: home and last-seen are ours. Not (stream closed, deregistered): only if no other replica took the agent over.
          const r = await client.query<{ agent_id: string }>(
            `UPDATE fleet_agents a SET snapshot = u.snapshot,
                    home_replica = CASE WHEN u.homed THEN $4 ELSE NULL END,
                    last_seen_ms = CASE WHEN u.homed THEN fleet_now_ms() ELSE a.last_seen_ms END
             FROM unnest($1::text[], $2::jsonb[], $3::bool[]) AS u(agent_id, snapshot, homed)
             WHERE a.agent_id = u.agent_id AND (u.homed OR a.home_replica IS NULL OR a.home_replica = $4)
             RETURNING a.agent_id`,
            [
              records.map((rec) => rec.agentId),
              records.map((rec) => JSON.stringify(fleetSnapshotOf(rec))),
              records.map((rec) => rec.streamId !== undefined),
              replicaId,
            ],
          );
          for (const row of r.rows) written.add(row.agent_id);
        }
        const ended = await applyJobTransitions(client, jobs);
        const ids = new Set([...written, ...ended.keys(), ...notify]);
        await announce(client, ids);
        // The agents' running jobs and the reservations their reports ended, in one update (same transaction).
        const loadIds = [...new Set([...written, ...ended.keys()])].sort();
        if (loadIds.length === 0) return [];
        const rows = loadIds.map((id) => ({ id, record: written.has(id) ? batch.get(id) : undefined }));
        const r = await client.query<{ agent_id: string; reserved: number; version: string }>(
          `UPDATE fleet_load l SET
              running = COALESCE(u.running, l.running), accepting = COALESCE(u.accepting, l.accepting),
              max_jobs = COALESCE(u.max_jobs, l.max_jobs), reserved = l.reserved - u.ended, version = l.version + 1
           FROM unnest($1::text[], $2::int[], $3::bool[], $4::int[], $5::int[]) AS u(agent_id, running, accepting, max_jobs, ended)
           WHERE l.agent_id = u.agent_id
           RETURNING l.agent_id, l.reserved, l.version`,
          [
            rows.map((x) => x.id),
            rows.map((x) => (x.record ? x.record.runningJobs + x.record.queuedJobs : null)),
            rows.map((x) => (x.record ? acceptingOf(x.record) : null)),
            rows.map((x) => (x.record ? x.record.maxJobs : null)),
            rows.map((x) => ended.get(x.id) ?? 0),
          ],
        );
        return r.rows.map((row) => ({ agentId: row.agent_id, reserved: row.reserved, version: Number(row.version) }));
      });
      applyLoads(loads);
    } catch (err) {
      // Nothing was written: keep it for the next flush (newer snapshots and reports win).
      for (const [id, rec] of batch) if (!dirty.has(id)) dirty.set(id, rec);
      for (const t of jobs) if (!transitions.has(t.jobId)) transitions.set(t.jobId, t);
      for (const id of notify) touched.add(id);
      throw err;
    } finally {
      for (const resolve of done) resolve();
    }
  };
  const flush = (): Promise<void> => {
    flushing ??= (async () => {
      // Never settle within this call: `flushing` is assigned first, then cleared by `finally`.
      await Promise.resolve();
      try {
        while (hasPending()) await flushOnce();
      } catch (err) {
        logger?.error({ err: fail('flush', err), store: location }, 'could not write the shared fleet; retrying at the next flush');
      } finally {
        flushing = undefined;
      }
    })();
    return flushing;
  };
  /** Flushes at the end of this turn (updates arriving together share one transaction). */
  const flushSoon = () => {
    if (soon || stopped) return;
    soon = setImmediate(() => {
      soon = undefined;
      if (flushing) void flushing.then(flushSoon);
      else void flush();
    });
  };

  const sweep = async () => {
    try {
      const expired = await expireShared(pool, now());
      applyLoads(expired);
      // The other replicas hear of the freed slots with the next flush.
      for (const row of expired) touched.add(row.agentId);
      const r = await pool.query<{ agent_id: string }>('DELETE FROM fleet_agents WHERE last_seen_ms < fleet_now_ms() - $1 RETURNING agent_id', [
        options.heartbeatTimeoutMs,
      ]);
      if (r.rows.length === 0) return;
      const ids = r.rows.map((row) => row.agent_id);
      await announce(pool, ids);
      for (const id of ids) {
        logger?.warn(
          { agentId: id, heartbeatTimeoutMs: options.heartbeatTimeoutMs },
          'agent evicted from the shared fleet: not heard of within the heartbeat timeout',
        );
        evictLocally(id);
      }
    } catch (err) {
      logger?.warn({ err: fail('sweep', err), store: location }, 'could not sweep the shared fleet');
    }
  };
  let sweeping: Promise<void> | undefined;

  return {
    replicaId,

    async start() {
      unlisten = store.listen(STORE_CHANNELS.fleet, onNotify);
      try {
        const r = await pool.query<ViewRow>(VIEW_SELECT);
        for (const row of r.rows) applyView(row);
      } catch (err) {
        throw fail('read agents', err);
      }
      flushTimer = setInterval(() => {
        if (hasPending()) void flush();
      }, flushIntervalMs);
      flushTimer.unref();
      sweepTimer = setInterval(() => {
        sweeping ??= sweep().finally(() => {
          sweeping = undefined;
        });
      }, sweepIntervalMs);
      sweepTimer.unref();
    },

    async registered(record) {
      dirty.delete(record.agentId);
      try {
        const r = await pool.query<{ reserved: number; version: string }>(
          `WITH a AS (
             INSERT INTO fleet_agents (agent_id, snapshot, home_replica, last_seen_ms) VALUES ($1, $2, $3, fleet_now_ms())
             ON CONFLICT (agent_id) DO UPDATE SET snapshot = EXCLUDED.snapshot, last_seen_ms = EXCLUDED.last_seen_ms,
               home_replica = COALESCE(fleet_agents.home_replica, EXCLUDED.home_replica)
             RETURNING agent_id)
           INSERT INTO fleet_load AS l (agent_id, max_jobs, accepting) SELECT agent_id, $4, $5 FROM a
           ON CONFLICT (agent_id) DO UPDATE SET max_jobs = EXCLUDED.max_jobs, accepting = EXCLUDED.accepting, version = l.version + 1
           RETURNING l.reserved, l.version`,
          [record.agentId, JSON.stringify(fleetSnapshotOf(record)), replicaId, record.maxJobs, acceptingOf(record)],
        );
        const row = r.rows[0];
        if (row) registry.applySharedLoad(record.agentId, row.reserved, Number(row.version));
        await announce(pool, [record.agentId]);
      } catch (err) {
        throw fail('register an agent', err, { agentId: record.agentId });
      }
    },

    healthApplied(record, update: HealthUpdate) {
      if (stopped) return undefined;
      const agentId = record.agentId;
      dirty.set(agentId, record);
      const previous = lastActive.get(agentId);
      const active = new Set(update.activeJobIds);
      let jobsChanged = false;
      const started = (jobId: string) => {
        if (transitions.get(jobId)?.kind === 'ended') return;
        transitions.set(jobId, { agentId, jobId, kind: 'started' });
        jobsChanged = true;
      };
      const ended = (jobId: string) => {
        transitions.set(jobId, { agentId, jobId, kind: 'ended' });
        jobsChanged = true;
      };
      for (const jobId of update.startedJobIds) started(jobId);
      for (const jobId of active) if (!previous?.has(jobId)) started(jobId);
      for (const jobId of update.rejectedJobIds) ended(jobId);
      for (const outcome of update.completedJobs) ended(outcome.jobId);
      if (previous) for (const jobId of previous) if (!active.has(jobId)) ended(jobId);
      if (active.size > 0) lastActive.set(agentId, active);
      else lastActive.delete(agentId);
      if (!jobsChanged) return undefined;
      // A slot the agent's report freed is free for every replica before the agent hears back.
      const written = new Promise<void>((resolve) => waiters.push(resolve));
      flushSoon();
      return written;
    },

    streamClosed(record) {
      if (stopped) return;
      lastActive.delete(record.agentId);
      dirty.set(record.agentId, record);
      flushSoon();
    },

    snapshotChanged(record) {
      if (stopped) return;
      dirty.set(record.agentId, record);
    },

    async deregistered(record) {
      dirty.delete(record.agentId);
      lastActive.delete(record.agentId);
      try {
        const load = await transaction(async (client) => {
          await client.query('UPDATE fleet_agents SET snapshot = $2 WHERE agent_id = $1', [record.agentId, JSON.stringify(fleetSnapshotOf(record))]);
          const row = await dropAgentJobs(client, record.agentId);
          await announce(client, [record.agentId]);
          return row;
        });
        if (load) applyLoads([load]);
      } catch (err) {
        throw fail('deregister an agent', err, { agentId: record.agentId });
      }
    },

    async reserve(request) {
      const byId = new Map(request.candidates.map((agent) => [agent.agentId, agent]));
      let result: Awaited<ReturnType<typeof reserveShared>>;
      try {
        result = await reserveShared(pool, {
          agentIds: [...byId.keys()],
          jobId: request.jobId,
          clientId: request.clientId,
          keyId: request.keyId,
          expiresAtMs: now() + options.claimWindowMs,
          tokenExpiresAtMs: request.tokenExpiresAtMs,
          clientLimit: request.clientLimit,
          replicaId,
        });
      } catch (err) {
        throw fail('reserve a slot', err, { jobId: request.jobId });
      }
      if (result.outcome === 'reserved') {
        const agent = byId.get(result.load.agentId);
        applyLoads([result.load]);
        touched.add(result.load.agentId);
        if (agent) return { outcome: 'reserved', agent, held: result.held };
        // Not one we asked for (cannot happen): give it back.
        await releaseShared(pool, request.jobId).catch(() => undefined);
        return { outcome: 'busy', held: result.held };
      }
      // This replica's view was stale: read the candidates again.
      if (result.outcome === 'busy') {
        for (const id of byId.keys()) toRead.add(id);
        scheduleRead();
      }
      return result;
    },

    async release(jobId) {
      try {
        const load = await releaseShared(pool, jobId);
        if (load) {
          applyLoads([load]);
          touched.add(load.agentId);
        }
      } catch (err) {
        throw fail('release a reservation', err, { jobId });
      }
    },

    async grantsOf(agentId, jobIds) {
      if (jobIds.length === 0) return [];
      try {
        const r = await pool.query<{ job_id: string; key_id: string | null; token_expires_at_ms: string }>(
          'SELECT job_id, key_id, token_expires_at_ms FROM fleet_jobs WHERE agent_id = $1 AND job_id = ANY($2)',
          [agentId, jobIds],
        );
        return r.rows.map(
          (row): SharedGrant => ({ jobId: row.job_id, agentId, keyId: row.key_id ?? undefined, tokenExpiresAtMs: Number(row.token_expires_at_ms) }),
        );
      } catch (err) {
        throw fail('read grants', err, { agentId });
      }
    },

    flush,

    async stop() {
      if (stopped) return;
      stopped = true;
      if (flushTimer) clearInterval(flushTimer);
      if (sweepTimer) clearInterval(sweepTimer);
      if (soon) clearImmediate(soon);
      if (readTimer) clearImmediate(readTimer);
      unlisten?.();
      await sweeping;
      await reading;
      await flush();
    },
  };
}

import type pg from 'pg';

/**
 * The shared reservations (`--store postgres`): the statements that take, end and expire a slot
 * in PostgreSQL, so that no agent is ever handed more jobs than its slots whichever replica
 * schedules. The invariant, kept by doing both in one statement or transaction every time:
 * `fleet_load.reserved` = the agent's `fleet_jobs` rows in state `reserved`, and a slot is taken
 * only while `reserved + running < max_jobs` (`running`: running + queued, as the agent last
 * reported to its home replica, written in the same transaction that ends the reservations of the
 * jobs it reports started). The schema is migration 2 of `postgres-migrations.ts`.
 */

/** An agent's shared load after a change: reservations over every replica and the row's version. */
export interface SharedLoadRow {
  agentId: string;
  reserved: number;
  version: number;
}

/** Arguments of {@link reserveShared}. */
export interface ReserveSharedArgs {
  /** Candidates, best first: the first with a free slot gets the job. */
  agentIds: readonly string[];
  jobId: string;
  clientId: string;
  keyId: string | undefined;
  /** The claim window's end (ms, this replica's clock; every replica's sweeper compares with its own). */
  expiresAtMs: number;
  tokenExpiresAtMs: number;
  /** Slots the client may hold over the cluster (reservations + started jobs), checked under a per-client lock; 0: none. */
  clientLimit: number;
  replicaId: string;
}

/** What {@link reserveShared} did. */
export type ReserveSharedResult = { outcome: 'reserved'; load: SharedLoadRow; held: number } | { outcome: 'busy' | 'client_limit'; held: number };

interface ReserveRow {
  outcome: 'reserved' | 'busy' | 'client_limit';
  agent_id: string | null;
  reserved: number;
  running: number;
  version: string;
  held: number;
}

/**
 * One scheduling decision, one round trip: `fleet_reserve()` (a prepared statement) counts the
 * client's holdings under its advisory lock when a limit applies, then runs
 * `UPDATE fleet_load SET reserved = reserved + 1 WHERE agent_id = $candidate AND accepting AND reserved + running < max_jobs`
 * on each candidate in turn and inserts the job (state `reserved`, claim-window end) on the first
 * that succeeds. The row lock makes concurrent takers on the same agent re-check the condition.
 */
export async function reserveShared(db: pg.Pool | pg.ClientBase, args: ReserveSharedArgs): Promise<ReserveSharedResult> {
  const r = await db.query<ReserveRow>({
    name: 'titan_fleet_reserve',
    text: 'SELECT outcome, agent_id, reserved, running, version, held FROM fleet_reserve($1, $2, $3, $4, $5, $6, $7, $8)',
    values: [args.agentIds, args.jobId, args.clientId, args.keyId ?? null, args.expiresAtMs, args.tokenExpiresAtMs, args.clientLimit, args.replicaId],
  });
  const row = r.rows[0];
  if (!row) return { outcome: 'busy', held: 0 };
  if (row.outcome === 'reserved' && row.agent_id !== null) {
    return { outcome: 'reserved', load: { agentId: row.agent_id, reserved: row.reserved, version: Number(row.version) }, held: row.held };
  }
  return { outcome: row.outcome === 'client_limit' ? 'client_limit' : 'busy', held: row.held };
}

const LOAD_RETURNING = 'RETURNING l.agent_id, l.reserved, l.version';
const toLoad = (rows: { agent_id: string; reserved: number; version: string }[]): SharedLoadRow[] =>
  rows.map((row) => ({ agentId: row.agent_id, reserved: row.reserved, version: Number(row.version) }));

/**
 * Ends one job wherever it is (the mirror of {@link reserveShared}): deletes its row and, when it
 * was still reserved, gives the slot back. Returns the agent's new load (undefined: no such job).
 */
export async function releaseShared(db: pg.Pool | pg.ClientBase, jobId: string): Promise<SharedLoadRow | undefined> {
  const r = await db.query<{ agent_id: string; reserved: number; version: string }>(
    `WITH gone AS (DELETE FROM fleet_jobs WHERE job_id = $1 RETURNING agent_id, state)
     UPDATE fleet_load l SET reserved = l.reserved - 1, version = l.version + 1 FROM gone
     WHERE l.agent_id = gone.agent_id AND gone.state = 'reserved' ${LOAD_RETURNING}`,
    [jobId],
  );
  return toLoad(r.rows)[0];
}

/**
 * Ends every reservation whose claim window ended by `nowMs` (any replica may run it: a row is
 * deleted once, by whichever gets it first). Returns the new load of the agents concerned.
 */
export async function expireShared(db: pg.Pool | pg.ClientBase, nowMs: number): Promise<SharedLoadRow[]> {
  const r = await db.query<{ agent_id: string; reserved: number; version: string }>(
    `WITH gone AS (DELETE FROM fleet_jobs WHERE state = 'reserved' AND expires_at_ms <= $1 RETURNING agent_id),
          n AS (SELECT agent_id, count(*)::int AS n FROM gone GROUP BY agent_id)
     UPDATE fleet_load l SET reserved = l.reserved - n.n, version = l.version + 1 FROM n
     WHERE l.agent_id = n.agent_id ${LOAD_RETURNING}`,
    [nowMs],
  );
  return toLoad(r.rows);
}

/** A job an agent reported: `started` (its reservation ends, the slot now counts in `running`) or `ended` (completed, rejected, no longer listed). */
export interface JobTransition {
  agentId: string;
  jobId: string;
  kind: 'started' | 'ended';
}

/**
 * Applies jobs an agent reported (inside the home replica's flush transaction, which then writes
 * the agent's `running` and these decrements in one `fleet_load` update): started reservations
 * become started jobs, ended jobs are deleted. Only jobs granted to that very agent match. A job
 * must appear once (an ended one not also as started). Returns agent id → reservations ended.
 */
export async function applyJobTransitions(client: pg.ClientBase, transitions: readonly JobTransition[]): Promise<Map<string, number>> {
  const ended = new Map<string, number>();
  if (transitions.length === 0) return ended;
  const r = await client.query<{ agent_id: string; n: number }>(
    `WITH pairs AS (SELECT * FROM unnest($1::text[], $2::text[], $3::text[]) AS p(agent_id, job_id, kind)),
          started AS (UPDATE fleet_jobs j SET state = 'started' FROM pairs p
                      WHERE p.kind = 'started' AND j.job_id = p.job_id AND j.agent_id = p.agent_id AND j.state = 'reserved' RETURNING j.agent_id),
          gone AS (DELETE FROM fleet_jobs j USING pairs p
                   WHERE p.kind = 'ended' AND j.job_id = p.job_id AND j.agent_id = p.agent_id RETURNING j.agent_id, j.state)
     SELECT agent_id, count(*)::int AS n FROM (SELECT agent_id FROM started UNION ALL SELECT agent_id FROM gone WHERE state = 'reserved') x GROUP BY agent_id`,
    [transitions.map((t) => t.agentId), transitions.map((t) => t.jobId), transitions.map((t) => t.kind)],
  );
  for (const row of r.rows) ended.set(row.agent_id, row.n);
  return ended;
}

/** Drops every job of an agent (deregistered) and its reservations; returns its new load. */
export async function dropAgentJobs(client: pg.ClientBase, agentId: string): Promise<SharedLoadRow | undefined> {
  await client.query('DELETE FROM fleet_jobs WHERE agent_id = $1', [agentId]);
  const r = await client.query<{ agent_id: string; reserved: number; version: string }>(
    `UPDATE fleet_load l SET reserved = 0, accepting = false, version = l.version + 1 WHERE l.agent_id = $1 ${LOAD_RETURNING}`,
    [agentId],
  );
  return toLoad(r.rows)[0];
}

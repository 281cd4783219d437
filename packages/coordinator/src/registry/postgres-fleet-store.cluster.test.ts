import { afterEach, beforeEach, describe, expect, it } from '@jest/globals';
import { createClientFactory, Metadata, Status, type ClientError } from 'nice-grpc';
import { AdminServiceDefinition, createProtoVersionClientMiddleware, type InferenceResponse } from '@titancompute/protocol';
import type { CoordinatorOptions } from '../coordinator.js';
import { expectGrpcError } from '../test-support/expect-grpc-error.js';
import { startFakeAgent, waitUntilVerified, type FakeAgent } from '../test-support/fake-agent.js';
import { startTestCoordinator, waitFor, type TestCoordinator } from '../test-support/test-coordinator.js';
import { createTestDatabase, postgresAvailable, testKeyringSecret, type TestDatabase } from '@titancompute/test-support/postgres';

const pgUp = await postgresAvailable('the shared fleet on PostgreSQL');
const describePg = pgUp ? describe : () => undefined;

/**
 * The fleet shared by coordinator replicas on one PostgreSQL database: three replicas in one
 * process (own data dirs and ports, one URL, one keyring secret) and fake agents registered over
 * real gRPC, each homed on one replica.
 */
describePg('the shared fleet: three replicas on one PostgreSQL database', () => {
  let db: TestDatabase;
  let secret: string;
  let replicas: TestCoordinator[] = [];
  const fakes: FakeAgent[] = [];
  const [A, B, C] = [0, 1, 2] as const;
  const r = (i: number) => replicas[i]!;

  beforeEach(async () => {
    db = await createTestDatabase();
    secret = testKeyringSecret();
  });
  afterEach(async () => {
    for (const f of fakes.splice(0)) await f.close();
    for (const c of replicas.splice(0)) await c.stop(true);
    await db.drop();
  });

  const startReplicas = async (options: Partial<CoordinatorOptions> = {}) => {
    replicas = await Promise.all(
      [0, 1, 2].map(() =>
        startTestCoordinator({ store: 'postgres', postgresUrl: db.url, keyringSecret: secret, maxClientShare: 1, fleetFlushIntervalMs: 50, ...options }),
      ),
    );
  };
  /** A fake agent (tiny, `slots` slots) homed on replica `home`, heartbeating every `heartbeatMs` (0: only explicit sends). */
  const agentOn = async (home: number, agentId: string, slots = 4, heartbeatMs = 0, credential?: string) => {
    const agent = await startFakeAgent({
      coordinatorAddress: r(home).coordinator.address,
      joinToken: 'test-join-token',
      agentId,
      maxJobs: slots,
      heartbeatIntervalMs: heartbeatMs,
      ...(credential ? { credential } : {}),
    });
    fakes.push(agent);
    return agent;
  };
  /** Waits until every replica sees each agent routable (verified, online). */
  const seenEverywhere = async (agentIds: readonly string[], timeoutMs = 5000) => {
    for (const c of replicas) for (const id of agentIds) await waitUntilVerified(c.client, id, timeoutMs);
    await waitFor(async () => {
      const all = await Promise.all(replicas.map((c) => c.client.querySystemStatus({ includeAgents: true })));
      return all.every((s) => agentIds.every((id) => s.agents.find((a) => a.agentId === id)?.status === 'healthy'));
    }, timeoutMs);
  };
  const ask = (i: number, clientId = 'c', metadata?: Metadata) =>
    r(i).client.requestInference({ clientId, model: 'tiny', prompt: 'hi' }, metadata ? { metadata } : {});
  const statusOf = async (i: number, agentId: string) =>
    (await r(i).client.querySystemStatus({ includeAgents: true })).agents.find((a) => a.agentId === agentId);
  const dbJobs = async () =>
    (await db.query('SELECT job_id, agent_id, state FROM fleet_jobs ORDER BY job_id')).rows as { job_id: string; agent_id: string; state: string }[];
  const dbLoad = async () =>
    (await db.query('SELECT agent_id, max_jobs, running, reserved FROM fleet_load ORDER BY agent_id')).rows as {
      agent_id: string;
      max_jobs: number;
      running: number;
      reserved: number;
    }[];

  it('5,000 requests at once over three replicas never hand an agent more jobs than its slots; every grant is used or expires', async () => {
    // A claim window longer than the burst (so the database still holds every grant when checked):
    // the burst takes 2–4 s on an idle 2-core machine and was seen at 9 s and 16 s beside the rest
    // of the suite. The grants come first (the fleet fills at once), so the window is what matters.
    const CLAIM_WINDOW = 30_000;
    await startReplicas({ claimWindowMs: CLAIM_WINDOW });
    const AGENTS = 30;
    const SLOTS = 4;
    const agents = await Promise.all(Array.from({ length: AGENTS }, (_, i) => agentOn(i % 3, `race-${String(i).padStart(2, '0')}`, SLOTS)));
    await seenEverywhere(
      agents.map((a) => a.agentId),
      10_000,
    );

    const burstStarted = Date.now();
    const outcomes = await Promise.allSettled(Array.from({ length: 5000 }, (_, i) => ask(i % 3, `client-${i % 7}`)));
    const burstMs = Date.now() - burstStarted;
    expect(burstMs).toBeLessThan(CLAIM_WINDOW - 1000);
    const grants = outcomes.flatMap((o) => (o.status === 'fulfilled' ? [o.value] : []));
    const refused = outcomes.flatMap((o) => (o.status === 'rejected' ? [o.reason as ClientError] : []));
    for (const err of refused) expect(err.code).toBe(Status.RESOURCE_EXHAUSTED);
    // What each agent was granted, from the answers: never more than its slots.
    const perAgent = new Map<string, InferenceResponse[]>();
    for (const g of grants) perAgent.set(g.agentId, [...(perAgent.get(g.agentId) ?? []), g]);
    for (const [, list] of perAgent) expect(list.length).toBeLessThanOrEqual(SLOTS);
    expect(grants.length).toBeLessThanOrEqual(AGENTS * SLOTS);
    // The fleet was filled (every replica's view catches up; the database decides).
    expect(grants.length).toBeGreaterThanOrEqual(AGENTS * SLOTS * 0.9);
    expect(new Set(grants.map((g) => g.jobId)).size).toBe(grants.length);
    // From the database: reserved = its reserved jobs, and never beyond the slots.
    const jobs = await dbJobs();
    expect(jobs.map((j) => j.job_id).sort()).toEqual(grants.map((g) => g.jobId).sort());
    for (const load of await dbLoad()) {
      expect(load.reserved + load.running).toBeLessThanOrEqual(load.max_jobs);
      expect(load.reserved).toBe(jobs.filter((j) => j.agent_id === load.agent_id && j.state === 'reserved').length);
    }

    // Half the grants are used (started then completed, reported to each agent's home replica), the rest expire.
    const used = grants.filter((_, i) => i % 2 === 0);
    const byId = new Map(agents.map((a) => [a.agentId, a]));
    for (const g of used) byId.get(g.agentId)!.startJob(g.jobId);
    await Promise.all(agents.map((a) => a.send()));
    const afterStart = await dbJobs();
    for (const g of used) expect(afterStart.find((j) => j.job_id === g.jobId)?.state).toBe('started');
    for (const load of await dbLoad()) expect(load.reserved + load.running).toBeLessThanOrEqual(load.max_jobs);
    for (const g of used) byId.get(g.agentId)!.finishJob(g.jobId);
    await Promise.all(agents.map((a) => a.send()));
    const usedIds = new Set(used.map((g) => g.jobId));
    expect((await dbJobs()).filter((j) => usedIds.has(j.job_id))).toEqual([]);
    // The unused ones end with their claim window, swept by whichever replica comes first.
    await waitFor(async () => (await dbJobs()).length === 0, CLAIM_WINDOW + 2000, 100);
    for (const load of await dbLoad()) expect([load.reserved, load.running]).toEqual([0, 0]);
    // And every replica sees the fleet free again.
    await waitFor(
      async () =>
        (await Promise.all(replicas.map((c) => c.client.querySystemStatus({ includeAgents: true })))).every((s) => s.agents.every((a) => a.reservedJobs === 0)),
      3000,
      50,
    );
  }, 90_000);

  it('an agent homed on A is scheduled by B and C, which see its health within one flush interval; its reports release their reservations', async () => {
    await startReplicas();
    const agent = await agentOn(A, 'homed-a', 4);
    await seenEverywhere(['homed-a']);
    agent.state.freeRamMb = 12_345;
    await agent.send();
    const seen = await waitFor(
      async () => (await statusOf(B, 'homed-a'))?.freeRamMb === 12_345 && (await statusOf(C, 'homed-a'))?.freeRamMb === 12_345,
      2000,
      5,
    );
    expect(seen).toBeLessThan(1000);

    const viaB = await ask(B);
    const viaC = await ask(C);
    const viaB2 = await ask(B);
    const viaC2 = await ask(C);
    for (const g of [viaB, viaC, viaB2, viaC2]) expect(g.agentId).toBe('homed-a');
    // Four slots, four reservations (two replicas): a fifth is busy on every replica.
    await waitFor(async () => (await statusOf(A, 'homed-a'))?.reservedJobs === 4, 2000);
    for (const i of [A, B, C]) await expectGrpcError(ask(i), Status.RESOURCE_EXHAUSTED, /busy/);

    // Started (reported to A): the reservation ends and the slot counts in running.
    agent.startJob(viaB.jobId);
    await agent.send({ startedJobIds: [viaB.jobId] });
    expect((await dbJobs()).find((j) => j.job_id === viaB.jobId)?.state).toBe('started');
    expect((await dbLoad())[0]).toMatchObject({ running: 1, reserved: 3 });
    // Rejected: freed at once.
    await agent.send({ rejectedJobIds: [viaC.jobId] });
    expect((await dbLoad())[0]).toMatchObject({ running: 1, reserved: 2 });
    // So one slot is free again, for any replica.
    const again = await ask(C);
    expect(again.agentId).toBe('homed-a');
    // Completed: the job's row goes, the slot is free.
    agent.finishJob(viaB.jobId);
    await agent.send();
    expect((await dbLoad())[0]).toMatchObject({ running: 0, reserved: 3 });
    expect((await dbJobs()).map((j) => j.job_id).sort()).toEqual([viaB2.jobId, viaC2.jobId, again.jobId].sort());
  });

  it('a reservation made by B ends with its claim window even after B is gone (swept by A or C)', async () => {
    await startReplicas({ claimWindowMs: 800 });
    await agentOn(A, 'sweep-a', 1);
    await seenEverywhere(['sweep-a']);
    const grant = await ask(B);
    expect(grant.agentId).toBe('sweep-a');
    await r(B).stop(true);
    replicas.splice(B, 1);
    await expectGrpcError(ask(0), Status.RESOURCE_EXHAUSTED, /busy/);
    await waitFor(async () => (await dbJobs()).length === 0, 3000, 50);
    expect((await dbLoad())[0]).toMatchObject({ reserved: 0 });
    // Both remaining replicas schedule it again.
    await waitFor(async () => (await statusOf(1, 'sweep-a'))?.reservedJobs === 0, 2000);
    expect((await ask(1)).agentId).toBe('sweep-a');
  });

  it('when replica A dies, its agents re-home on B without losing anything; one that does not come back is evicted everywhere within the heartbeat timeout', async () => {
    const HEARTBEAT_TIMEOUT = 2000;
    await startReplicas({ heartbeatTimeoutMs: HEARTBEAT_TIMEOUT });
    const stays = await agentOn(A, 'moves', 4, 200);
    const leaves = await agentOn(A, 'leaves', 4, 200);
    await agentOn(C, 'other', 4, 200);
    await seenEverywhere(['moves', 'leaves', 'other']);
    // A reservation on the agent that moves, made by C before A dies.
    await waitFor(async () => (await statusOf(C, 'moves'))?.status === 'healthy', 2000);
    const before = await r(C).client.requestInference({ clientId: 'c', model: 'tiny', prompt: 'hi', excludeAgentIds: ['leaves', 'other'] });
    expect(before.agentId).toBe('moves');

    await r(A).stop(true);
    const killedAt = Date.now();
    stays.drop();
    leaves.drop();
    // The agent re-homes on B (same id and credential; a new endpoint, checked by B).
    const moved = await agentOn(B, 'moves', 4, 200, stays.credential);
    await waitFor(async () => (await statusOf(C, 'moves'))?.status === 'healthy' && (await statusOf(B, 'moves'))?.status === 'healthy', 3000);
    const home = await db.query("SELECT home_replica FROM fleet_agents WHERE agent_id = 'moves'");
    expect(home.rows[0]?.home_replica).toBeTruthy();
    // Nothing lost: C's reservation is still held, and the agent starting it (reported to B) releases it.
    expect((await dbJobs()).map((j) => j.job_id)).toContain(before.jobId);
    moved.startJob(before.jobId);
    await moved.send({ startedJobIds: [before.jobId] });
    expect((await dbJobs()).find((j) => j.job_id === before.jobId)?.state).toBe('started');
    // C schedules it again, through its new home.
    const after = await r(C).client.requestInference({ clientId: 'c', model: 'tiny', prompt: 'hi', excludeAgentIds: ['leaves', 'other'] });
    expect(after.agentId).toBe('moves');

    // The one that never came back is evicted on B and C (and from the database) within the timeout.
    await waitFor(async () => (await statusOf(B, 'leaves')) === undefined && (await statusOf(C, 'leaves')) === undefined, HEARTBEAT_TIMEOUT + 2000, 50);
    expect(Date.now() - killedAt).toBeLessThanOrEqual(HEARTBEAT_TIMEOUT + 1500);
    expect((await db.query("SELECT 1 FROM fleet_agents WHERE agent_id = 'leaves'")).rows).toHaveLength(0);
    expect(await statusOf(B, 'moves')).toBeDefined();
    expect(await statusOf(C, 'other')).toBeDefined();
  }, 20_000);

  it('the circuit state is shared: failures of jobs granted by B, reported to A, open the breaker on every replica', async () => {
    await startReplicas({ breaker: { failureThreshold: 2, openDurationMs: 60_000 } });
    const agent = await agentOn(A, 'flaky', 4);
    await seenEverywhere(['flaky']);
    const jobs = [await ask(B), await ask(C)];
    for (const g of jobs) agent.startJob(g.jobId);
    await agent.send();
    for (const g of jobs) agent.finishJob(g.jobId, { error: 'engine crashed' });
    await agent.send();
    await waitFor(
      async () => (await Promise.all([A, B, C].map((i) => statusOf(i, 'flaky')))).every((s) => s?.breakerState === 'open' && s.status === 'offline'),
      2000,
    );
    for (const i of [A, B, C]) await expectGrpcError(ask(i), Status.UNAVAILABLE, /no agent available/);
  });

  it('an API key with max-concurrent 3 gets 3 slots over the whole cluster, not 3 per replica', async () => {
    await startReplicas({ auth: 'keys' });
    await agentOn(A, 'k-a', 50);
    await agentOn(B, 'k-b', 50);
    await seenEverywhere(['k-a', 'k-b']);
    const admin = createClientFactory().use(createProtoVersionClientMiddleware()).create(AdminServiceDefinition, r(A).channel);
    const { secret: key } = await admin.createApiKey(
      { name: 'three', maxConcurrent: 3 },
      { metadata: Metadata({ authorization: `Bearer ${r(A).coordinator.adminToken}` }) },
    );
    const metadata = Metadata({ authorization: `Bearer ${key}` });
    const outcomes = await Promise.allSettled(Array.from({ length: 30 }, (_, i) => ask(i % 3, 'ignored', metadata)));
    const refused = outcomes.flatMap((o) => (o.status === 'rejected' ? [o.reason as ClientError] : []));
    expect(outcomes.filter((o) => o.status === 'fulfilled')).toHaveLength(3);
    for (const err of refused) {
      expect(err.code).toBe(Status.RESOURCE_EXHAUSTED);
      expect(err.details).toMatch(/concurrent jobs limit of 3/);
    }
  });
});

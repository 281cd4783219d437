import { afterEach, describe, expect, it } from '@jest/globals';
import { ClientError, Status, type Metadata } from 'nice-grpc';
import { startFakeAgent, type FakeAgent } from '../test-support/fake-agent.js';
import { startTestCoordinator, waitFor, type TestCoordinator } from '../test-support/test-coordinator.js';

const JOIN = 'test-join-token';
let tc: TestCoordinator | undefined;
let agents: FakeAgent[] = [];

afterEach(async () => {
  await Promise.all(agents.map((a) => a.close()));
  agents = [];
  await tc?.stop(true);
  tc = undefined;
});

async function setup(options: { claimWindowMs: number; maxClientShare?: number }, agentSlots: number[]): Promise<TestCoordinator> {
  tc = await startTestCoordinator({ claimWindowMs: options.claimWindowMs, maxClientShare: options.maxClientShare ?? 1 });
  for (const [i, maxJobs] of agentSlots.entries()) {
    agents.push(await startFakeAgent({ coordinatorAddress: `127.0.0.1:${tc.coordinator.port}`, joinToken: JOIN, agentId: `agent-${i}`, maxJobs }));
  }
  return tc;
}

const request = (clientId = 'client-1') => ({ clientId, model: 'tiny', prompt: 'hello' });

/** RequestInference that resolves to its grant, or to the ClientError and its retry-after-ms trailer. */
async function ask(t: TestCoordinator, clientId?: string) {
  let trailer: Metadata | undefined;
  try {
    return { grant: await t.client.requestInference(request(clientId), { onTrailer: (m) => (trailer = m) }) };
  } catch (err) {
    if (!(err instanceof ClientError)) throw err;
    return { error: err, retryAfterMs: Number(trailer?.get('retry-after-ms')) };
  }
}

async function post(t: TestCoordinator, clientId = 'client-1') {
  const res = await fetch(`${t.httpUrl}/api/v1/inference/request`, {
    method: 'POST',
    body: JSON.stringify({ client_id: clientId, model: 'tiny', prompt: 'hello' }),
  });
  return { status: res.status, retryAfter: res.headers.get('retry-after'), json: (await res.json()) as Record<string, unknown> };
}

async function reserved(t: TestCoordinator): Promise<number> {
  return (await t.client.querySystemStatus({ includeMetrics: true })).metrics?.reservedJobs ?? -1;
}

describe('reservations: claim window, rejection, per-client share, retry hints', () => {
  it('a never-used grant (gRPC) frees its slot when the claim window ends, not when the token expires', async () => {
    const t = await setup({ claimWindowMs: 400 }, [1]);
    const first = await ask(t);
    expect(first.grant?.agentId).toBe('agent-0');
    // The token itself lives 5 minutes; only the slot is given back.
    expect(first.grant!.expiresAt * 1000 - Date.now()).toBeGreaterThan(60_000);
    const busy = await ask(t);
    expect(busy.error?.code).toBe(Status.RESOURCE_EXHAUSTED);
    // The slot frees when the window ends: the hint says so (never more than the window).
    expect(busy.retryAfterMs).toBeGreaterThan(0);
    expect(busy.retryAfterMs).toBeLessThanOrEqual(400);
    await waitFor(async () => (await ask(t)).grant !== undefined, 5000, 50);
  });

  it('a never-used grant (REST) frees its slot when the claim window ends; 429 says when', async () => {
    const t = await setup({ claimWindowMs: 400 }, [1]);
    expect((await post(t)).status).toBe(200);
    const busy = await post(t);
    expect(busy.status).toBe(429);
    expect(busy.json).toMatchObject({ error: 'agents_busy', code: 429 });
    expect(busy.retryAfter).toBe('1'); // 400 ms, rounded up to whole seconds
    await waitFor(async () => (await post(t)).status === 200, 5000, 50);
  });

  it('Retry-After and retry-after-ms report the real end of the blocking claim window', async () => {
    const t = await setup({ claimWindowMs: 8000 }, [1]);
    const grantedAt = Date.now();
    expect((await ask(t)).grant).toBeDefined();
    const busy = await ask(t);
    const elapsed = Date.now() - grantedAt;
    expect(busy.error?.code).toBe(Status.RESOURCE_EXHAUSTED);
    // ≈ 8000 − time since the grant (the old answer was a fixed 1000 ms).
    expect(busy.retryAfterMs).toBeLessThanOrEqual(8000);
    expect(busy.retryAfterMs).toBeGreaterThanOrEqual(8000 - elapsed - 50);
    const rest = await post(t);
    expect(rest.status).toBe(429);
    expect(Number(rest.retryAfter)).toBeGreaterThanOrEqual(Math.floor((8000 - (Date.now() - grantedAt)) / 1000));
    expect(Number(rest.retryAfter)).toBeLessThanOrEqual(8);
  });

  it('a job the agent reports rejected frees its slot at once (claim window far away)', async () => {
    const t = await setup({ claimWindowMs: 60_000 }, [1]);
    const { grant } = await ask(t);
    expect((await ask(t)).error?.code).toBe(Status.RESOURCE_EXHAUSTED);
    await agents[0]!.send({ rejectedJobIds: [grant!.jobId] });
    expect(await reserved(t)).toBe(0);
    expect((await ask(t)).grant).toBeDefined();
  });

  it('a rejection only releases a reservation: a job already started keeps its slot', async () => {
    const t = await setup({ claimWindowMs: 60_000 }, [2]);
    const a = agents[0]!;
    const { grant } = await ask(t, 'c1');
    a.startJob(grant!.jobId);
    await a.send({ startedJobIds: [grant!.jobId] });
    // A replayed or stray rejection of a running job must not free its slot.
    await a.send({ rejectedJobIds: [grant!.jobId] });
    const status = await t.client.querySystemStatus({ includeAgents: true });
    expect(status.agents[0]).toMatchObject({ runningJobs: 1, reservedJobs: 0 });
    expect((await ask(t, 'c2')).grant).toBeDefined();
    expect((await ask(t, 'c3')).error?.code).toBe(Status.RESOURCE_EXHAUSTED);
    // The job ends: its slot is free the moment the agent says so.
    a.finishJob(grant!.jobId);
    await a.send();
    expect((await ask(t, 'c3')).grant).toBeDefined();
  });

  it('a started job is counted once (agent running_jobs), and is held by its client until it ends', async () => {
    const t = await setup({ claimWindowMs: 60_000, maxClientShare: 0.5 }, [2, 2]);
    const g1 = (await ask(t, 'greedy')).grant!;
    const g2 = (await ask(t, 'greedy')).grant!;
    // Fleet of 4 slots, share 0.5: "greedy" may hold 2.
    const refused = await ask(t, 'greedy');
    expect(refused.error?.code).toBe(Status.RESOURCE_EXHAUSTED);
    expect(refused.error?.details).toMatch(/client "greedy" already holds 2 of its limit of 2 slot\(s\)/);
    expect(refused.error?.details).toMatch(/max client share 0\.5 of 4 fleet slots/);
    expect(refused.retryAfterMs).toBeGreaterThan(1000); // only reservations: their window
    const rest = await post(t, 'greedy');
    expect(rest.status).toBe(429);
    expect(String(rest.json.message)).toMatch(/limit of 2/);
    // Another client is not blocked by it.
    expect((await ask(t, 'polite')).grant).toBeDefined();
    // The jobs start: reservations become started jobs, still held by "greedy".
    for (const g of [g1, g2]) {
      const agent = agents.find((x) => x.agentId === g.agentId)!;
      agent.startJob(g.jobId);
      await agent.send({ startedJobIds: [g.jobId] });
    }
    const held = await ask(t, 'greedy');
    expect(held.error?.details).toMatch(/already holds 2/);
    expect(held.retryAfterMs).toBeLessThanOrEqual(250); // a running job may end any moment
    const status = await t.client.querySystemStatus({ includeAgents: true, includeMetrics: true });
    const running = status.agents.reduce((n, s) => n + s.runningJobs, 0);
    const reservedJobs = status.agents.reduce((n, s) => n + s.reservedJobs, 0);
    expect(running).toBe(2);
    expect(reservedJobs).toBe(1); // polite's, not yet started
    // One job ends: "greedy" may ask again.
    const agent = agents.find((x) => x.agentId === g1.agentId)!;
    agent.finishJob(g1.jobId);
    await agent.send();
    expect((await ask(t, 'greedy')).grant).toBeDefined();
  });
});

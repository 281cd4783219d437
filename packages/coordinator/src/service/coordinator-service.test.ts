import { afterEach, beforeEach, describe, expect, it } from '@jest/globals';
import { ClientError, Metadata, Status } from 'nice-grpc';
import { createFakeAgent, startFakeAgent, type FakeAgent } from '../test-support/fake-agent.js';
import { startTestCoordinator, waitFor, type TestCoordinator } from '../test-support/test-coordinator.js';
import { expectGrpcError } from '../test-support/expect-grpc-error.js';

const JOIN = 'test-join-token';
let tc: TestCoordinator;
let agents: FakeAgent[] = [];

async function addAgent(agentId: string, over: Partial<Parameters<typeof startFakeAgent>[0]> = {}): Promise<FakeAgent> {
  const a = await startFakeAgent({ coordinatorAddress: `127.0.0.1:${tc.coordinator.port}`, joinToken: JOIN, agentId, totalVramMb: 24_000, ...over });
  agents.push(a);
  return a;
}

const request = (over: Record<string, unknown> = {}) => ({ clientId: 'client-1', model: 'tiny', prompt: 'hello', ...over });

describe('CoordinatorService over gRPC', () => {
  beforeEach(async () => {
    tc = await startTestCoordinator({ heartbeatTimeoutMs: 600, breaker: { failureThreshold: 3, openDurationMs: 300, successThreshold: 2 } });
  });
  afterEach(async () => {
    await Promise.all(agents.map((a) => a.close()));
    agents = [];
    await tc.stop(true);
  });

  it('refuses RegisterAgent and ReportHealth without the right join token (UNAUTHENTICATED)', async () => {
    const registration = { agentId: 'x', endpoint: '127.0.0.1:1', maxJobs: 1, supportedModels: ['tiny'] };
    await expectGrpcError(tc.client.registerAgent(registration), Status.UNAUTHENTICATED, /join token/);
    await expectGrpcError(
      tc.client.registerAgent(registration, { metadata: Metadata({ authorization: 'Bearer wrong' }) }),
      Status.UNAUTHENTICATED,
      /invalid join token/,
    );
    const impostor = createFakeAgent({ coordinatorAddress: `127.0.0.1:${tc.coordinator.port}`, joinToken: 'wrong', agentId: 'x' });
    await expect(impostor.register()).rejects.toBeInstanceOf(ClientError);
    const stream = tc.client.reportHealth(
      (async function* () {
        yield { agentId: 'x', timestamp: 1 };
      })(),
    );
    await expectGrpcError(
      (async () => {
        for await (const _ of stream) void _;
      })(),
      Status.UNAUTHENTICATED,
    );
    const status = await tc.client.querySystemStatus({ includeAgents: true });
    expect(status.totalAgents).toBe(0);
    await impostor.close();
  });

  it('registers with the agreed response and acks every update with its timestamp', async () => {
    const a = createFakeAgent({ coordinatorAddress: `127.0.0.1:${tc.coordinator.port}`, joinToken: JOIN, agentId: 'a1' });
    agents.push(a);
    const res = await a.register();
    expect(res).toMatchObject({ status: 'registered', heartbeatIntervalSeconds: 2 });
    a.connect();
    const ack = await a.send({ timestamp: 123456 });
    expect(ack).toMatchObject({ agentId: 'a1', reregister: false, echoTimestamp: 123456 });
  });

  it('rejects a bad registration with INVALID_ARGUMENT naming the field', async () => {
    const md = { metadata: Metadata({ authorization: `Bearer ${JOIN}` }) };
    await expectGrpcError(tc.client.registerAgent({ agentId: 'a', endpoint: 'nohostport', maxJobs: 1 }, md), Status.INVALID_ARGUMENT, /endpoint/);
    await expectGrpcError(tc.client.registerAgent({ agentId: 'a', endpoint: 'h:1', maxJobs: 0 }, md), Status.INVALID_ARGUMENT, /max_jobs/);
  });

  it('spreads a burst of N requests evenly over M equal agents', async () => {
    const M = 4;
    const N = 12;
    for (let i = 0; i < M; i++) await addAgent(`agent-${i}`, { maxJobs: 8 });
    const grants = await Promise.all(Array.from({ length: N }, (_, i) => tc.client.requestInference(request({ clientId: `c${i}` }))));
    const perAgent = new Map<string, number>();
    for (const g of grants) perAgent.set(g.agentId, (perAgent.get(g.agentId) ?? 0) + 1);
    expect(perAgent.size).toBe(M);
    for (const n of perAgent.values()) expect(n).toBeLessThanOrEqual(Math.ceil(N / M) + 1);
    const status = await tc.client.querySystemStatus({ includeAgents: true, includeMetrics: true });
    expect(status.totalJobs).toBe(N);
    expect(status.metrics?.reservedJobs).toBe(N);
    expect(status.agents.map((s) => s.reservedJobs).reduce((x, y) => x + y, 0)).toBe(N);
  });

  it('releases reservations when the job shows up in active_job_ids or completed_jobs', async () => {
    const a = await addAgent('a1', { maxJobs: 2 });
    const g1 = await tc.client.requestInference(request({ clientId: 'c1' }));
    const g2 = await tc.client.requestInference(request({ clientId: 'c2' }));
    const busy = await expectGrpcError(tc.client.requestInference(request({ clientId: 'c3' })), Status.RESOURCE_EXHAUSTED, /busy/);
    expect(busy.details).toMatch(/retry after/);
    a.startJob(g1.jobId);
    a.finishJob(g2.jobId);
    await a.send();
    let status = await tc.client.querySystemStatus({ includeAgents: true });
    expect(status.agents[0]).toMatchObject({ reservedJobs: 0, runningJobs: 1 });
    await tc.client.requestInference(request());
    a.finishJob(g1.jobId);
    await a.send();
    status = await tc.client.querySystemStatus({ includeAgents: true, includeMetrics: true });
    expect(status.metrics?.jobsCompletedTotal).toBe(2);
  });

  it('answers RESOURCE_EXHAUSTED with a retry-after-ms trailer when every agent is busy', async () => {
    await addAgent('a1', { maxJobs: 1 });
    await tc.client.requestInference(request());
    let trailer: Metadata | undefined;
    const err = await expectGrpcError(tc.client.requestInference(request(), { onTrailer: (t) => (trailer = t) }), Status.RESOURCE_EXHAUSTED);
    expect(err.details).toMatch(/tiny/);
    expect(Number(trailer?.get('retry-after-ms'))).toBeGreaterThan(0);
  });

  it('avoids a busy agent', async () => {
    const busy = await addAgent('a-busy', { maxJobs: 4 });
    await addAgent('b-idle', { maxJobs: 4 });
    await busy.send({ runningJobs: 3, queuedJobs: 1 });
    for (let i = 0; i < 3; i++) expect((await tc.client.requestInference(request())).agentId).toBe('b-idle');
  });

  it('answers UNAVAILABLE naming the model when no agent serves it', async () => {
    await expectGrpcError(tc.client.requestInference(request({ model: 'ghost-7b' })), Status.UNAVAILABLE, /ghost-7b/);
    await addAgent('a1', { models: ['other'] });
    await expectGrpcError(tc.client.requestInference(request({ model: 'ghost-7b' })), Status.UNAVAILABLE, /ghost-7b/);
  });

  it('validates requests: INVALID_ARGUMENT naming the field; defaults applied', async () => {
    await addAgent('a1');
    await expectGrpcError(tc.client.requestInference(request({ clientId: '' })), Status.INVALID_ARGUMENT, /client_id/);
    await expectGrpcError(tc.client.requestInference(request({ model: '' })), Status.INVALID_ARGUMENT, /model/);
    await expectGrpcError(tc.client.requestInference(request({ prompt: '' })), Status.INVALID_ARGUMENT, /prompt/);
    await expectGrpcError(tc.client.requestInference(request({ prompt: 'x'.repeat(40_000) })), Status.INVALID_ARGUMENT, /prompt/);
    await expectGrpcError(tc.client.requestInference(request({ maxTokens: 5000 })), Status.INVALID_ARGUMENT, /max_tokens/);
    await expectGrpcError(tc.client.requestInference(request({ maxTokens: -1 })), Status.INVALID_ARGUMENT, /max_tokens/);
    await expectGrpcError(tc.client.requestInference(request({ temperature: 2.5 })), Status.INVALID_ARGUMENT, /temperature/);
    await expectGrpcError(tc.client.requestInference(request({ parameters: { required_memory_mb: 'lots' } })), Status.INVALID_ARGUMENT, /required_memory_mb/);
    const g = await tc.client.requestInference(request());
    expect(g.maxTokens).toBe(100);
    expect(g.temperature).toBeCloseTo(0.7, 5);
    const greedy = await tc.client.requestInference(request({ temperature: 0, temperatureSet: true, maxTokens: 7 }));
    expect(greedy.temperature).toBe(0);
    expect(greedy.maxTokens).toBe(7);
  });

  it('never chooses excluded agents and filters on the required memory parameter', async () => {
    await addAgent('a-small', { totalVramMb: 8_000 });
    await addAgent('b-big', { totalVramMb: 80_000 });
    expect((await tc.client.requestInference(request({ excludeAgentIds: ['b-big'] }))).agentId).toBe('a-small');
    expect((await tc.client.requestInference(request({ parameters: { required_memory_mb: '40000' } }))).agentId).toBe('b-big');
  });

  it('opens the breaker of a failing agent, avoids it, half-opens it, and closes it after successes', async () => {
    const bad = await addAgent('a-bad', { maxJobs: 8 });
    await addAgent('b-good', { maxJobs: 8 });
    // Only outcomes of jobs granted to the agent count: fail three real grants.
    const failed = await Promise.all([1, 2, 3].map(() => tc.client.requestInference(request({ excludeAgentIds: ['b-good'] }))));
    for (const g of failed) bad.finishJob(g.jobId, { error: 'engine_error' });
    await bad.send();
    let status = await tc.client.querySystemStatus({ includeAgents: true });
    expect(status.agents.find((s) => s.agentId === 'a-bad')).toMatchObject({ status: 'offline', breakerState: 'open' });
    for (let i = 0; i < 4; i++) expect((await tc.client.requestInference(request())).agentId).toBe('b-good');
    await waitFor(
      async () => (await tc.client.querySystemStatus({ includeAgents: true })).agents.some((s) => s.agentId === 'a-bad' && s.status === 'half-open'),
      2000,
    );
    const probe = await tc.client.requestInference(request({ excludeAgentIds: ['b-good'] }));
    expect(probe.agentId).toBe('a-bad');
    const probe2 = await tc.client.requestInference(request({ excludeAgentIds: ['b-good'] }));
    bad.finishJob(probe.jobId);
    bad.finishJob(probe2.jobId);
    await bad.send();
    status = await tc.client.querySystemStatus({ includeAgents: true });
    expect(status.agents.find((s) => s.agentId === 'a-bad')).toMatchObject({ status: 'healthy', breakerState: 'closed' });
  });

  it('evicts an agent that stops heartbeating within a second of HEARTBEAT_TIMEOUT, then asks it to re-register', async () => {
    const a = await addAgent('a1');
    const silentSince = Date.now();
    a.stopHeartbeats();
    await waitFor(async () => (await tc.client.querySystemStatus({})).totalAgents === 0, 3000, 25);
    const elapsed = Date.now() - silentSince;
    expect(elapsed).toBeGreaterThanOrEqual(600);
    expect(elapsed).toBeLessThanOrEqual(1600);
    await expectGrpcError(tc.client.requestInference(request()), Status.UNAVAILABLE);
    const ack = await a.send();
    expect(ack.reregister).toBe(true);
    await waitFor(() => a.registrations === 2);
    expect((await tc.client.querySystemStatus({})).totalAgents).toBe(1);
  });

  it('marks an agent offline at once when its health stream closes, and stops routing to it', async () => {
    const a = await addAgent('a1');
    a.drop();
    await waitFor(async () => (await tc.client.querySystemStatus({ includeAgents: true })).agents[0]?.status === 'offline', 1000, 10);
    await expectGrpcError(tc.client.requestInference(request()), Status.UNAVAILABLE, /tiny/);
  });

  it('stops routing to draining and deregistered agents', async () => {
    const a = await addAgent('a-drain');
    const b = await addAgent('b-leave');
    a.state.draining = true;
    await a.send();
    expect((await tc.client.requestInference(request())).agentId).toBe('b-leave');
    const res = await b.client.deregisterAgent(
      { agentId: 'b-leave', reason: 'shutdown', agentCredential: b.credential },
      { metadata: Metadata({ authorization: `Bearer ${JOIN}` }) },
    );
    expect(res.status).toBe('deregistered');
    await expectGrpcError(tc.client.requestInference(request()), Status.UNAVAILABLE);
    await expectGrpcError(tc.client.deregisterAgent({ agentId: 'b-leave' }), Status.UNAUTHENTICATED);
  });

  it('reports real uptime, total jobs, per-agent details and metrics', async () => {
    await addAgent('a1', { totalVramMb: 0, totalRamMb: 32_000, freeRamMb: 30_000, heartbeatIntervalMs: 150 });
    await tc.client.requestInference(request());
    await expectGrpcError(tc.client.requestInference(request({ model: 'nope' })), Status.UNAVAILABLE);
    await new Promise((r) => setTimeout(r, 1100));
    const status = await tc.client.querySystemStatus({ includeAgents: true, includeMetrics: true });
    expect(status.uptime).toMatch(/^\d+s$/);
    expect(status.uptimeSeconds).toBeGreaterThanOrEqual(1);
    expect(status).toMatchObject({ totalAgents: 1, healthyAgents: 1, totalJobs: 1 });
    expect(status.agents[0]).toMatchObject({ agentId: 'a1', status: 'healthy', totalRamMb: 32_000, freeRamMb: 30_000, maxJobs: 4, supportedModels: ['tiny'] });
    expect(status.metrics).toMatchObject({ requestsTotal: 2, scheduledTotal: 1, rejectedNoAgentTotal: 1 });
    expect(status.metrics?.schedulingLatencyP50Ms).toBeGreaterThan(0);
    const bare = await tc.client.querySystemStatus({});
    expect(bare.agents).toEqual([]);
    expect(bare.metrics).toBeUndefined();
  });
});

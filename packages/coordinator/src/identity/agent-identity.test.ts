import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from '@jest/globals';
import { Metadata, Status } from 'nice-grpc';
import type { DeepPartial, HealthUpdate } from '@titancompute/protocol';
import { startAgent, type Engine, type RunningAgent } from '@titancompute/agent';
import { createFakeAgent, startFakeAgent, waitUntilVerified, type FakeAgent, type FakeAgentOptions } from '../test-support/fake-agent.js';
import { startTestCoordinator, waitFor, type TestCoordinator } from '../test-support/test-coordinator.js';
import { openIdentityStore } from './identity-store.js';
import { expectGrpcError } from '../test-support/expect-grpc-error.js';

const JOIN = 'test-join-token';
const auth = () => ({ metadata: Metadata({ authorization: `Bearer ${JOIN}` }) });
const OTHER_CREDENTIAL = 'x'.repeat(43);
let clients = 0;
// A new client each time: the per-client share never gets in the way.
const request = (over: Record<string, unknown> = {}) => ({ clientId: `client-${++clients}`, model: 'tiny', prompt: 'hello', ...over });
const ROUTABLE = new Set(['healthy', 'degraded']);

let tc: TestCoordinator;
let cleanups: (() => Promise<unknown>)[] = [];

async function startTc(dataDir?: string): Promise<TestCoordinator> {
  return startTestCoordinator({
    ...(dataDir ? { dataDir } : {}),
    heartbeatTimeoutMs: 5000,
    breaker: { failureThreshold: 3, openDurationMs: 60_000, successThreshold: 2 },
    endpointVerification: { attempts: 3, initialDelayMs: 20, maxDelayMs: 50, attemptTimeoutMs: 1000 },
  });
}

function fake(agentId: string, over: Partial<FakeAgentOptions> = {}): FakeAgent {
  const a = createFakeAgent({ coordinatorAddress: `127.0.0.1:${tc.coordinator.port}`, joinToken: JOIN, agentId, totalVramMb: 24_000, ...over });
  cleanups.push(() => a.close());
  return a;
}

async function addAgent(agentId: string, over: Partial<FakeAgentOptions> = {}): Promise<FakeAgent> {
  const a = await startFakeAgent({ coordinatorAddress: `127.0.0.1:${tc.coordinator.port}`, joinToken: JOIN, agentId, totalVramMb: 24_000, ...over });
  cleanups.push(() => a.close());
  return a;
}

/** Opens a health stream, sends `updates`, and drains the acks (rejects with the stream's error). */
async function healthStream(updates: DeepPartial<HealthUpdate>[]): Promise<void> {
  const stream = tc.client.reportHealth(
    (async function* () {
      yield* updates;
    })(),
    auth(),
  );
  for await (const ack of stream) void ack;
}

const agentStatus = async (agentId: string) => (await tc.client.querySystemStatus({ includeAgents: true })).agents.find((a) => a.agentId === agentId);

describe('agent identity, validated health and reachable endpoints', () => {
  beforeEach(async () => {
    tc = await startTc();
  });
  afterEach(async () => {
    for (const c of cleanups.reverse()) await c().catch(() => undefined);
    cleanups = [];
    await tc.stop(true);
  });

  it('(a) refuses a re-registration of a live agent id with another credential (PERMISSION_DENIED naming the id and the fix); routing is unchanged', async () => {
    const victim = await addAgent('victim');
    // The attacker even serves an AgentService that answers GetStatus as "victim".
    const attacker = fake('victim', { credential: OTHER_CREDENTIAL });
    const err = await expectGrpcError(attacker.register(), Status.PERMISSION_DENIED, /victim/);
    expect(err.details).toMatch(/forget-agent victim/);
    expect(attacker.endpoint).not.toBe(victim.endpoint);
    expect(await agentStatus('victim')).toMatchObject({ endpoint: victim.endpoint, status: 'healthy' });
    for (let i = 0; i < 3; i++) expect((await tc.client.requestInference(request())).agentEndpoint).toBe(victim.endpoint);
    // The owner itself re-registers fine.
    await expect(victim.register()).resolves.toMatchObject({ status: 'registered' });
  });

  it('(b) refuses DeregisterAgent for another agent: wrong credential PERMISSION_DENIED, none INVALID_ARGUMENT; the agent stays routable', async () => {
    const victim = await addAgent('victim');
    await expectGrpcError(
      tc.client.deregisterAgent({ agentId: 'victim', reason: 'evil', agentCredential: OTHER_CREDENTIAL }, auth()),
      Status.PERMISSION_DENIED,
      /victim/,
    );
    await expectGrpcError(tc.client.deregisterAgent({ agentId: 'victim', reason: 'evil' }, auth()), Status.INVALID_ARGUMENT, /agent_credential/);
    expect((await tc.client.requestInference(request())).agentId).toBe('victim');
    await expect(victim.deregister()).resolves.toMatchObject({ status: 'deregistered' });
    await expectGrpcError(tc.client.requestInference(request()), Status.UNAVAILABLE);
  });

  it('(c) refuses a health stream for another agent; nothing it sends is stored', async () => {
    await addAgent('victim', { maxJobs: 4 });
    const forged = { agentId: 'victim', runningJobs: 0, queuedJobs: 0, freeVramMb: 0, timestamp: 1 };
    await expectGrpcError(healthStream([{ ...forged, agentCredential: OTHER_CREDENTIAL }]), Status.PERMISSION_DENIED, /victim/);
    await expectGrpcError(healthStream([forged]), Status.INVALID_ARGUMENT, /agent_credential/);
    expect(await agentStatus('victim')).toMatchObject({ status: 'healthy', freeVramMb: 24_000, runningJobs: 0 });
  });

  it('(c) answers INVALID_ARGUMENT naming the field for negative, NaN or huge health values, and stores none of them', async () => {
    const a = await addAgent('a1', { maxJobs: 4 });
    const base = { agentId: 'a1', agentCredential: a.credential, freeVramMb: 1000, freeRamMb: 1000, timestamp: 1 };
    const granted = await tc.client.requestInference(request());
    const cases: [DeepPartial<HealthUpdate>, RegExp][] = [
      [{ runningJobs: -1000 }, /running_jobs/],
      [{ queuedJobs: 10_000_000 }, /queued_jobs/],
      [{ cpuPercent: Number.NaN }, /cpu_percent/],
      [{ rttMs: Number.POSITIVE_INFINITY }, /rtt_ms/],
      [{ freeVramMb: 2 ** 52 }, /free_vram_mb/],
      [{ completedJobs: [{ jobId: granted.jobId, tokensPerSecond: 1e308, tokensGenerated: 1 }] }, /completed_jobs\[0\]\.tokens_per_second/],
      [{ completedJobs: [{ jobId: granted.jobId, timeToFirstTokenMs: -5 }] }, /completed_jobs\[0\]\.time_to_first_token_ms/],
    ];
    for (const [bad, field] of cases) await expectGrpcError(healthStream([{ ...base, ...bad }]), Status.INVALID_ARGUMENT, field);
    expect(await agentStatus('a1')).toMatchObject({ status: 'healthy', runningJobs: 0, queuedJobs: 0, freeVramMb: 24_000, cpuPercent: 10, tokensPerSecond: 0 });
    // The grant is still claimable: its real outcome counts.
    a.finishJob(granted.jobId, { tokensPerSecond: 40 });
    await a.send();
    expect((await agentStatus('a1'))?.tokensPerSecond).toBe(40);
  });

  it('(c) ignores outcomes of jobs never granted to the agent (and repeats): the breaker stays closed, tokens/s untouched', async () => {
    const a = await addAgent('a1', { maxJobs: 8 });
    for (const id of ['fake-1', 'fake-2', 'fake-3', 'fake-4']) a.finishJob(id, { error: 'engine_error' });
    a.finishJob('fake-5', { tokensPerSecond: 999_999 });
    await a.send();
    const granted = await tc.client.requestInference(request());
    a.finishJob(granted.jobId, { error: 'engine_error' });
    await a.send();
    // The same outcome again (a replayed report) counts once.
    for (let i = 0; i < 3; i++) {
      a.finishJob(granted.jobId, { error: 'engine_error' });
      await a.send();
    }
    expect(await agentStatus('a1')).toMatchObject({ status: 'healthy', breakerState: 'closed', tokensPerSecond: 0 });
    const status = await tc.client.querySystemStatus({ includeMetrics: true });
    expect(status.metrics?.jobsFailedTotal).toBe(1);
    // Real failures of granted jobs still open it.
    const more = await Promise.all([1, 2].map(() => tc.client.requestInference(request())));
    for (const g of more) a.finishJob(g.jobId, { error: 'engine_error' });
    await a.send();
    expect(await agentStatus('a1')).toMatchObject({ breakerState: 'open' });
  });

  it('(d) never hands out an endpoint it could not reach, or one that answers as another agent', async () => {
    const dead = fake('dead', { serve: false, endpoint: '127.0.0.1:1' });
    await dead.register();
    dead.connect();
    await dead.send();
    expect((await agentStatus('dead'))?.status).toBe('unverified');
    await expectGrpcError(tc.client.requestInference(request()), Status.UNAVAILABLE, /tiny/);
    const victim = await addAgent('victim');
    const impostor = fake('impostor', { serve: false, endpoint: victim.endpoint });
    await impostor.register();
    impostor.connect();
    await impostor.send();
    const grants = await Promise.all([1, 2, 3, 4].map(() => tc.client.requestInference(request())));
    expect(new Set(grants.map((g) => g.agentId))).toEqual(new Set(['victim']));
    await expectGrpcError(tc.client.requestInference(request({ excludeAgentIds: ['victim'] })), Status.UNAVAILABLE);
    expect((await agentStatus('dead'))?.status).toBe('unverified');
    expect((await agentStatus('impostor'))?.status).toBe('unverified');
  });

  it('(d) a known agent that moves to an unreachable endpoint is not routed until it is reached', async () => {
    const a = await addAgent('mover');
    const moved = fake('mover', { credential: a.credential, serve: false, endpoint: '127.0.0.1:1' });
    await moved.register();
    expect((await agentStatus('mover'))?.status).toBe('unverified');
    await expectGrpcError(tc.client.requestInference(request()), Status.UNAVAILABLE);
    await a.register();
    await waitUntilVerified(tc.client, 'mover');
    expect((await tc.client.requestInference(request())).agentEndpoint).toBe(a.endpoint);
  });

  it('validates registrations: agent_id, endpoint and credential limits (INVALID_ARGUMENT naming the field)', async () => {
    const reg = { agentId: 'ok', endpoint: '127.0.0.1:5', maxJobs: 1, supportedModels: ['tiny'], agentCredential: OTHER_CREDENTIAL };
    const cases: [Record<string, unknown>, RegExp][] = [
      [{ agentId: 'has space' }, /agent_id/],
      [{ agentId: 'a'.repeat(129) }, /agent_id/],
      [{ agentId: '' }, /agent_id/],
      [{ endpoint: 'host:0' }, /endpoint/],
      [{ endpoint: 'host:65536' }, /endpoint/],
      [{ endpoint: 'a b:1' }, /endpoint/],
      [{ endpoint: `${'a'.repeat(254)}:1` }, /endpoint/],
      [{ endpoint: '::1:50052' }, /endpoint/],
      [{ agentCredential: '' }, /agent_credential: is required/],
      [{ agentCredential: 'short' }, /agent_credential: must be at least 32/],
      [{ totalRamMb: -1 }, /total_ram_mb/],
    ];
    for (const [bad, field] of cases) await expectGrpcError(tc.client.registerAgent({ ...reg, ...bad }, auth()), Status.INVALID_ARGUMENT, field);
    expect((await tc.client.querySystemStatus({})).totalAgents).toBe(0);
    for (const endpoint of ['[::1]:50052', 'gpu-node-1.cluster.local:50052', 'agent_1:50052']) {
      await expect(tc.client.registerAgent({ ...reg, agentId: `ok-${endpoint.length}`, endpoint }, auth())).resolves.toMatchObject({ status: 'registered' });
    }
  });

  it('keeps bindings across a coordinator restart; forget-agent releases an id for a replacement machine', async () => {
    const dataDir = tc.dataDir;
    const original = await addAgent('gpu-1');
    await original.close();
    cleanups = [];
    await tc.stop(false);
    tc = await startTc(dataDir);
    const replacement = fake('gpu-1', { credential: OTHER_CREDENTIAL });
    await expectGrpcError(replacement.register(), Status.PERMISSION_DENIED, /gpu-1/);
    const back = fake('gpu-1', { credential: original.credential });
    await expect(back.register()).resolves.toMatchObject({ status: 'registered' });
    // The operator releases the id (what `titan-coordinator forget-agent gpu-1` does), with the coordinator running.
    const store = openIdentityStore({ dataDir });
    expect(store.forget('gpu-1')).toBe(true);
    expect(store.forget('gpu-1')).toBe(false);
    store.close();
    await expect(replacement.register()).resolves.toMatchObject({ status: 'registered' });
    await expectGrpcError(back.register(), Status.PERMISSION_DENIED, /gpu-1/);
  });

  it('after a coordinator restart, an agent registering again from the endpoint verified before is routed at once (no new check)', async () => {
    const dataDir = tc.dataDir;
    const original = await addAgent('steady');
    await original.close();
    cleanups = [];
    await tc.stop(false);
    tc = await startTc(dataDir);
    // Nothing answers at the old endpoint any more: a new check could only fail, so being
    // routable proves the remembered verification was used.
    const back = fake('steady', { credential: original.credential, serve: false, endpoint: original.endpoint });
    await back.register();
    expect((await agentStatus('steady'))?.status).not.toBe('unverified');
    // Another endpoint is checked as before.
    const moved = fake('steady', { credential: original.credential, serve: false, endpoint: '127.0.0.1:1' });
    await moved.register();
    expect((await agentStatus('steady'))?.status).toBe('unverified');
  });

  it('a real agent keeps its credential across a restart with the same data dir and re-registers fine; another data dir cannot take its id', async () => {
    const agentDir = mkdtempSync(join(tmpdir(), 'titan-agent-id-'));
    cleanups.push(async () => rmSync(agentDir, { recursive: true, force: true }));
    const engine = (): Engine => ({
      name: 'inline',
      models: ['tiny'],
      load: async () => undefined,
      async *generate() {
        yield { text: 'x', tokens: 1 };
      },
      close: async () => undefined,
    });
    const start = (dataDir: string): Promise<RunningAgent> =>
      startAgent({
        agentId: 'real-1',
        host: '127.0.0.1',
        port: 0,
        coordinator: `127.0.0.1:${tc.coordinator.port}`,
        joinToken: JOIN,
        engine: engine(),
        dataDir,
        heartbeatIntervalMs: 200,
        registerBackoffInitialMs: 50,
        registerBackoffMaxMs: 200,
        drainTimeoutMs: 1000,
        nvidiaSmiPath: '/nonexistent/nvidia-smi',
        logLevel: 'silent',
      });
    const first = await start(agentDir);
    const credential = readFileSync(join(agentDir, 'agent-credential'), 'utf8').trim();
    expect(credential).toMatch(/^[A-Za-z0-9_-]{43}$/);
    await waitUntilVerified(tc.client, 'real-1');
    expect((await tc.client.requestInference(request())).agentEndpoint).toBe(first.endpoint);
    await first.stop();

    const second = await start(agentDir);
    cleanups.push(() => second.stop());
    expect(second.endpoint).not.toBe(first.endpoint);
    expect(readFileSync(join(agentDir, 'agent-credential'), 'utf8').trim()).toBe(credential);
    await waitFor(async () => {
      const s = await agentStatus('real-1');
      return s?.endpoint === second.endpoint && ROUTABLE.has(s.status);
    }, 10_000).catch(async (err: unknown) => {
      throw new Error(`${(err as Error).message}: ${JSON.stringify(await agentStatus('real-1'))}`);
    });
    expect((await tc.client.requestInference(request())).agentEndpoint).toBe(second.endpoint);

    // Another machine claiming the same id (its own data dir, so its own credential) is refused.
    const otherDir = mkdtempSync(join(tmpdir(), 'titan-agent-id-'));
    cleanups.push(async () => rmSync(otherDir, { recursive: true, force: true }));
    const intruder = await start(otherDir);
    cleanups.push(() => intruder.stop());
    expect(readFileSync(join(otherDir, 'agent-credential'), 'utf8').trim()).not.toBe(credential);
    await expectGrpcError(
      tc.client.registerAgent(
        {
          agentId: 'real-1',
          endpoint: intruder.endpoint,
          maxJobs: 4,
          supportedModels: ['tiny'],
          agentCredential: readFileSync(join(otherDir, 'agent-credential'), 'utf8').trim(),
        },
        auth(),
      ),
      Status.PERMISSION_DENIED,
      /real-1/,
    );
    for (let i = 0; i < 3; i++) expect((await tc.client.requestInference(request())).agentEndpoint).toBe(second.endpoint);
  }, 30_000);
});

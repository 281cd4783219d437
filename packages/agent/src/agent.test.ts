import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { Status } from 'nice-grpc-common';
import type { Channel } from 'nice-grpc';
import type { AgentServiceClient } from '@titancompute/protocol';
import { startAgent, type RunningAgent } from './agent.js';
import { collect, createAgentClient, statusOf } from './test-support/agent-client.js';
import { startFakeCoordinator, type FakeCoordinator } from './test-support/fake-coordinator.js';
import { createFakeEngine } from './test-support/fake-engine.js';
import { createTestSigner, type TestSigner } from './test-support/token-signer.js';

const AGENT_ID = 'agent-under-test';
const MODEL = 'llama-2-tiny-random';

let coordinator: FakeCoordinator;
let signer: TestSigner;
let agent: RunningAgent;
let client: AgentServiceClient;
let channel: Channel;

beforeAll(async () => {
  signer = await createTestSigner({ aud: AGENT_ID, model: MODEL });
  coordinator = await startFakeCoordinator({ signers: [signer] });
  agent = await startAgent({
    agentId: AGENT_ID,
    host: '127.0.0.1',
    port: 0,
    coordinator: coordinator.address,
    joinToken: 'join-secret',
    maxConcurrentJobs: 1,
    maxQueue: 1,
    heartbeatIntervalMs: 5000,
    nvidiaSmiPath: '/nonexistent/nvidia-smi',
    drainTimeoutMs: 2000,
    logLevel: (process.env.TEST_LOG_LEVEL as 'silent' | undefined) ?? 'silent',
  });
  ({ client, channel } = createAgentClient(`127.0.0.1:${agent.port}`));
  await coordinator.waitFor(() => coordinator.registrations.length > 0);
});

afterAll(async () => {
  channel?.close();
  await agent?.stop();
  await coordinator?.stop();
});

/** Waits until the agent runs no job (the slot is free). */
async function waitIdle(timeoutMs = 1000): Promise<void> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const s = await client.getStatus({});
    if (s.runningJobs === 0 && s.queuedJobs === 0) return;
    if (Date.now() > end) throw new Error(`agent still busy after ${timeoutMs} ms: ${s.runningJobs} running, ${s.queuedJobs} queued`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('StreamInference with the real tiny model', () => {
  it('streams generated tokens and ends with a done message carrying the stats', async () => {
    const token = await signer.sign({ max_tokens: 8, job_id: 'job-real-1' });
    const msgs = await collect(
      client.streamInference({ sessionToken: token, model: MODEL, prompt: 'Once upon a time', maxTokens: 0, temperature: 0, stream: true }),
    );
    const last = msgs.at(-1)!;
    const pieces = msgs.slice(0, -1);
    expect(pieces.length).toBeGreaterThan(0);
    expect(pieces.map((m) => m.content).join('').length).toBeGreaterThan(0);
    for (const m of pieces) {
      expect(m.done).toBe(false);
      expect(m.token).toBe(m.content);
      expect(m.createdAt).toBeGreaterThan(0);
    }
    expect(pieces.map((m) => m.tokenIndex)).toEqual([...pieces.map((m) => m.tokenIndex)].sort((a, b) => a - b));
    expect(last.done).toBe(true);
    expect(last.content).toBe('');
    expect(last.stats).toMatchObject({ agentId: AGENT_ID, jobId: 'job-real-1' });
    expect(last.stats!.tokensGenerated).toBeGreaterThan(0);
    expect(last.stats!.tokensGenerated).toBeLessThanOrEqual(8);
    expect(last.stats!.promptTokens).toBeGreaterThan(0);
    expect(['stop', 'length']).toContain(last.stats!.finishReason);
    expect(last.metadata).toMatchObject({
      tokens_generated: String(last.stats!.tokensGenerated),
      agent_id: AGENT_ID,
      job_id: 'job-real-1',
      finish_reason: last.stats!.finishReason,
    });
    expect(Number(last.metadata.tokens_per_second)).toBeGreaterThan(0);
    expect(Number(last.metadata.time_to_first_token_ms)).toBeGreaterThan(0);
  });

  it('honours max_tokens below the token limit (greedy, stop parameter accepted)', async () => {
    const token = await signer.sign({ max_tokens: 16, parameters: { seed: '1', top_k: '10', stop: 'zzzz' } });
    const msgs = await collect(
      client.streamInference({
        sessionToken: token,
        model: MODEL,
        prompt: 'Hello',
        maxTokens: 3,
        temperature: 0,
        stream: true,
        options: { seed: '1', top_k: '10', stop: 'zzzz' },
      }),
    );
    const last = msgs.at(-1)!;
    expect(last.stats!.tokensGenerated).toBeLessThanOrEqual(3);
    expect(last.stats!.finishReason === 'length' ? last.stats!.tokensGenerated : 3).toBe(3);
  });

  it('reports the job to the coordinator: active while running, then completed', async () => {
    // Long enough (64 tokens, over a second here) to outlast the link's ~50 ms debounce, so an
    // update is sent while the job runs; a 4-token job can start and end inside one debounce.
    const token = await signer.sign({ max_tokens: 64, job_id: 'job-reported' });
    await collect(client.streamInference({ sessionToken: token, model: MODEL, prompt: 'Hi', maxTokens: 0, temperature: 0, stream: true }));
    await coordinator.waitFor(() => coordinator.updates.some((u) => u.completedJobs.some((j) => j.jobId === 'job-reported')), 2000);
    expect(coordinator.updates.some((u) => u.activeJobIds.includes('job-reported'))).toBe(true);
    const outcome = coordinator.updates.flatMap((u) => u.completedJobs).find((j) => j.jobId === 'job-reported');
    expect(outcome).toMatchObject({ error: '' });
    expect(outcome!.tokensGenerated).toBeGreaterThan(0);
  });
});

describe('StreamInference refuses bad tokens and requests', () => {
  const req = (sessionToken: string, extra: Record<string, unknown> = {}) => ({
    sessionToken,
    model: MODEL,
    prompt: 'Hi',
    maxTokens: 0,
    temperature: 0,
    stream: true,
    ...extra,
  });

  it('a replayed token is UNAUTHENTICATED "token already used"', async () => {
    const token = await signer.sign({ max_tokens: 2 });
    await collect(client.streamInference(req(token)));
    const err = await statusOf(() => collect(client.streamInference(req(token))));
    expect(err.code).toBe(Status.UNAUTHENTICATED);
    expect(err.details).toMatch(/token already used/);
  });

  it('expired, tampered and missing tokens are UNAUTHENTICATED', async () => {
    const expired = await signer.sign({ exp: Math.floor(Date.now() / 1000) - 60 });
    expect((await statusOf(() => collect(client.streamInference(req(expired))))).code).toBe(Status.UNAUTHENTICATED);
    const [h, p, s] = (await signer.sign()).split('.');
    const claims = JSON.parse(Buffer.from(p!, 'base64url').toString()) as Record<string, unknown>;
    const tampered = `${h}.${Buffer.from(JSON.stringify({ ...claims, max_tokens: 4096 })).toString('base64url')}.${s}`;
    expect((await statusOf(() => collect(client.streamInference(req(tampered))))).code).toBe(Status.UNAUTHENTICATED);
    expect((await statusOf(() => collect(client.streamInference(req(''))))).code).toBe(Status.UNAUTHENTICATED);
  });

  it('a token for another agent, another model, or with lower limits is PERMISSION_DENIED', async () => {
    const other = await signer.sign({ aud: 'some-other-agent' });
    expect((await statusOf(() => collect(client.streamInference(req(other))))).code).toBe(Status.PERMISSION_DENIED);
    const wrongModel = await signer.sign();
    const e1 = await statusOf(() => collect(client.streamInference(req(wrongModel, { model: 'llama-70b' }))));
    expect(e1.code).toBe(Status.PERMISSION_DENIED);
    expect(e1.details).toMatch(/model/);
    const small = await signer.sign({ max_tokens: 4 });
    const e2 = await statusOf(() => collect(client.streamInference(req(small, { maxTokens: 5 }))));
    expect(e2.code).toBe(Status.PERMISSION_DENIED);
    expect(e2.details).toMatch(/max_tokens 5 is above the session token's limit of 4/);
    // refused requests do not burn the token
    await expect(collect(client.streamInference(req(small, { maxTokens: 2 })))).resolves.toBeDefined();
  });

  it('a token for a model this agent does not serve is NOT_FOUND naming the models it serves, and its job is reported rejected at once', async () => {
    const token = await signer.sign({ model: 'llama-70b', job_id: 'job-unserved-model' });
    const err = await statusOf(() => collect(client.streamInference(req(token, { model: '' }))));
    expect(err.code).toBe(Status.NOT_FOUND);
    expect(err.details).toBe(`model llama-70b is not served by this agent (serves ${MODEL})`);
    await coordinator.waitFor(() => coordinator.updates.some((u) => u.rejectedJobIds.includes('job-unserved-model')), 5000);
  });

  it('bad input is INVALID_ARGUMENT naming the field', async () => {
    const t = await signer.sign();
    const e1 = await statusOf(() => collect(client.streamInference(req(t, { prompt: '' }))));
    expect(e1.code).toBe(Status.INVALID_ARGUMENT);
    expect(e1.details).toMatch(/prompt/);
    const e2 = await statusOf(() => collect(client.streamInference(req(t, { temperature: 3 }))));
    expect(e2.details).toMatch(/temperature/);
    const e3 = await statusOf(() => collect(client.streamInference(req(t, { options: { top_p: 'lots' } }))));
    expect(e3.code).toBe(Status.INVALID_ARGUMENT);
    expect(e3.details).toMatch(/options\.top_p/);
    const e4 = await statusOf(() => collect(client.streamInference(req(t, { prompt: 'x'.repeat(33 * 1024) }))));
    expect(e4.details).toMatch(/prompt is larger than 32768 bytes/);
  });
});

describe('capacity', () => {
  it('a client cancelling frees the slot within a second', async () => {
    const token = await signer.sign({ max_tokens: 4000 });
    const ac = new AbortController();
    const stream = client.streamInference(req4000(token), { signal: ac.signal });
    const it = stream[Symbol.asyncIterator]();
    await it.next();
    expect((await client.getStatus({})).runningJobs).toBe(1);
    ac.abort();
    await it.next().catch(() => undefined);
    await waitIdle(1000);
    const next = await collect(
      client.streamInference({ sessionToken: await signer.sign({ max_tokens: 2 }), model: MODEL, prompt: 'Hi', maxTokens: 0, temperature: 0, stream: true }),
    );
    expect(next.at(-1)?.done).toBe(true);
  });

  it('beyond running + queue the agent answers RESOURCE_EXHAUSTED; queued work runs after', async () => {
    const ac = new AbortController();
    const running = client.streamInference(req4000(await signer.sign({ max_tokens: 4000 })), { signal: ac.signal })[Symbol.asyncIterator]();
    await running.next();
    const queued = collect(
      client.streamInference({
        sessionToken: await signer.sign({ max_tokens: 2, job_id: 'queued-job' }),
        model: MODEL,
        prompt: 'Hi',
        maxTokens: 0,
        temperature: 0,
        stream: true,
      }),
    );
    const deadline = Date.now() + 2000;
    while ((await client.getStatus({})).queuedJobs < 1 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    const third = await signer.sign({ max_tokens: 4000 });
    const overflow = await statusOf(() => collect(client.streamInference(req4000(third))));
    expect(overflow.code).toBe(Status.RESOURCE_EXHAUSTED);
    ac.abort();
    await running.next().catch(() => undefined);
    const done = await queued;
    expect(done.at(-1)?.stats?.jobId).toBe('queued-job');
    await waitIdle();
  });
});

describe('GetStatus', () => {
  it('reports state, memory, counters and the loaded model', async () => {
    const status = await client.getStatus({ agentId: AGENT_ID, includeJobs: true });
    expect(status).toMatchObject({
      agentId: AGENT_ID,
      status: 'healthy',
      modelLoaded: MODEL,
      engine: 'llama-cpp',
      maxJobs: 1,
      runningJobs: 0,
      activeSessions: 0,
      freeVramMb: 0,
    });
    expect(status.freeRamMb).toBeGreaterThan(0);
    expect(status.totalRequestsProcessed).toBeGreaterThanOrEqual(5);
    expect(status.totalTokensGenerated).toBeGreaterThan(0);
    expect(status.gpus).toEqual([]);
  });
});

describe('keys unavailable', () => {
  it('answers UNAVAILABLE and never streams when the coordinator has no keys', async () => {
    const lonely = await startFakeCoordinator({ signers: [] });
    const other = await startAgent({
      agentId: 'agent-no-keys',
      host: '127.0.0.1',
      port: 0,
      coordinator: lonely.address,
      joinToken: 'join-secret',
      engine: createFakeEngine({ models: [MODEL] }),
      nvidiaSmiPath: '/nonexistent/nvidia-smi',
      logLevel: 'silent',
    });
    const { client: c, channel: ch } = createAgentClient(`127.0.0.1:${other.port}`);
    try {
      const token = await signer.sign({ aud: 'agent-no-keys' });
      const err = await statusOf(() =>
        collect(c.streamInference({ sessionToken: token, model: MODEL, prompt: 'Hi', maxTokens: 0, temperature: 0, stream: true })),
      );
      expect(err.code).toBe(Status.UNAVAILABLE);
    } finally {
      ch.close();
      await other.stop();
      await lonely.stop();
    }
  });
});

function req4000(token: string) {
  return { sessionToken: token, model: MODEL, prompt: 'Tell me a long story', maxTokens: 0, temperature: 0.7, stream: true }; // the token's temperature
}

/**
 * A whole agent (startAgent with the fake engine) and the fake coordinator: the registration
 * advertises the HTTP endpoint and the embeddings capability, and the job reports carry
 * prompt_tokens for HTTP, embeddings and gRPC jobs alike.
 */
import { afterEach, beforeAll, describe, expect, it } from '@jest/globals';
import { startAgent, type RunningAgent } from '../agent.js';
import { collect, createAgentClient } from '../test-support/agent-client.js';
import { startFakeCoordinator, type FakeCoordinator } from '../test-support/fake-coordinator.js';
import { createFakeEngine, type FakeEngineOptions } from '../test-support/fake-engine.js';
import { createTestSigner, type TestSigner } from '../test-support/token-signer.js';
import { promptSha256 } from '../tokens/token-verifier.js';

const MODEL = 'fake-model';

let signer: TestSigner;
beforeAll(async () => {
  signer = await createTestSigner({ model: MODEL, temperature: 1, max_tokens: 4 });
});

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!();
});

async function start(
  agentId: string,
  engine: FakeEngineOptions,
  extra: { publicHost?: string; httpEndpoint?: string } = {},
): Promise<{ agent: RunningAgent; coordinator: FakeCoordinator }> {
  const coordinator = await startFakeCoordinator({ signers: [signer] });
  cleanups.push(() => coordinator.stop());
  const agent = await startAgent({
    agentId,
    host: '127.0.0.1',
    port: 0,
    coordinator: coordinator.address,
    joinToken: 'join-secret',
    engine: createFakeEngine({ models: [MODEL], promptTokens: 3, ...engine }),
    heartbeatIntervalMs: 5000,
    nvidiaSmiPath: '/nonexistent/nvidia-smi',
    drainTimeoutMs: 1000,
    logLevel: 'silent',
    ...extra,
  });
  cleanups.push(() => agent.stop());
  await coordinator.waitFor(() => coordinator.registrations.length > 0);
  return { agent, coordinator };
}

/** The outcome the coordinator was sent for `jobId`. */
async function outcomeOf(coordinator: FakeCoordinator, jobId: string) {
  await coordinator.waitFor(() => coordinator.updates.some((u) => u.completedJobs.some((j) => j.jobId === jobId)), 3000);
  return coordinator.updates.flatMap((u) => u.completedJobs).find((j) => j.jobId === jobId);
}

describe('registration and job reports of the HTTP side', () => {
  it('registers http_endpoint and embeddings "true" with an engine that embeds; HTTP and gRPC jobs report prompt_tokens', async () => {
    const { agent, coordinator } = await start('reg-embed-agent', { embedDimensions: 2 });
    const [reg] = coordinator.registrations;
    expect(reg?.httpEndpoint).toBe(`127.0.0.1:${agent.httpPort}`);
    expect(reg?.httpEndpoint).toBe(agent.httpEndpoint);
    expect(reg?.endpoint).toBe(`127.0.0.1:${agent.port}`);
    expect(reg?.capabilities).toMatchObject({ engine: 'fake', embeddings: 'true' });

    const generation = await signer.sign({ aud: 'reg-embed-agent', job_id: 'job-http', prompt_sha256: promptSha256('Hi') });
    const res = await fetch(`http://${agent.httpEndpoint}/v1/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${generation}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model: MODEL, prompt: 'Hi' }),
    });
    expect(res.status).toBe(200);
    expect(await outcomeOf(coordinator, 'job-http')).toEqual({
      jobId: 'job-http',
      tokensGenerated: 4,
      timeToFirstTokenMs: expect.any(Number),
      tokensPerSecond: expect.any(Number),
      error: '',
      promptTokens: 3,
    });

    const input = ['one two', 'three'];
    const embeddings = await signer.sign({
      aud: 'reg-embed-agent',
      job_id: 'job-embed',
      prompt_sha256: promptSha256(JSON.stringify(input)),
      parameters: { task: 'embeddings' },
    });
    const emb = await fetch(`http://${agent.httpEndpoint}/v1/embeddings?session_token=${embeddings}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: MODEL, input }),
    });
    expect(emb.status).toBe(200);
    expect(await outcomeOf(coordinator, 'job-embed')).toEqual({
      jobId: 'job-embed',
      tokensGenerated: 0,
      timeToFirstTokenMs: 0,
      tokensPerSecond: 0,
      error: '',
      promptTokens: 3,
    });

    const { client, channel } = createAgentClient(`127.0.0.1:${agent.port}`);
    try {
      const grpc = await signer.sign({ aud: 'reg-embed-agent', job_id: 'job-grpc', prompt_sha256: promptSha256('Hi') });
      await collect(client.streamInference({ sessionToken: grpc, model: MODEL, prompt: 'Hi', maxTokens: 0, temperature: 0, stream: true }));
    } finally {
      channel.close();
    }
    expect(await outcomeOf(coordinator, 'job-grpc')).toMatchObject({ tokensGenerated: 4, promptTokens: 3, error: '' });
  });

  it('an engine without embed registers no embeddings capability; --http-endpoint overrides the advertised address', async () => {
    const { agent, coordinator } = await start('reg-plain-agent', {}, { httpEndpoint: 'gpu-1.example.com:8443' });
    const [reg] = coordinator.registrations;
    expect(reg?.capabilities).not.toHaveProperty('embeddings');
    expect(reg?.httpEndpoint).toBe('gpu-1.example.com:8443');
    expect(agent.httpEndpoint).toBe('gpu-1.example.com:8443');
    // The server still listens on its own port.
    expect((await fetch(`http://127.0.0.1:${agent.httpPort}/health`)).status).toBe(200);
  });

  it('draining: new HTTP requests get 503 while the agent stops, and the port is closed after', async () => {
    const { agent } = await start('reg-drain-agent', { tokenDelayMs: 20 });
    const token = await signer.sign({ aud: 'reg-drain-agent', max_tokens: 30, prompt_sha256: promptSha256('Hi') });
    const running = fetch(`http://${agent.httpEndpoint}/v1/completions?session_token=${token}`, {
      method: 'POST',
      body: JSON.stringify({ model: MODEL, prompt: 'Hi', max_tokens: 30 }),
    });
    await new Promise((r) => setTimeout(r, 50));
    const stopping = agent.stop('test');
    await new Promise((r) => setTimeout(r, 20));
    const refused = await fetch(`http://${agent.httpEndpoint}/v1/completions?session_token=${token}`, {
      method: 'POST',
      body: JSON.stringify({ model: MODEL, prompt: 'Hi' }),
    });
    expect(refused.status).toBe(503);
    expect(((await refused.json()) as { error: { message: string } }).error.message).toMatch(/draining/);
    // The in-flight request finishes.
    const done = await running;
    expect(done.status).toBe(200);
    expect(((await done.json()) as { usage: { completion_tokens: number } }).usage.completion_tokens).toBe(30);
    await stopping;
    await expect(fetch(`http://${agent.httpEndpoint}/health`)).rejects.toThrow();
  });
});

/**
 * A whole agent (startAgent: embedded llama.cpp with the bundled tiny model, the fake
 * coordinator's keys) answering a streamed chat on its HTTP port, as a stock OpenAI client
 * redirected by the coordinator reaches it (`?session_token=`).
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { startAgent, type RunningAgent } from '../agent.js';
import { startFakeCoordinator, type FakeCoordinator } from '../test-support/fake-coordinator.js';
import { createTestSigner, type TestSigner } from '../test-support/token-signer.js';
import { messagesSha256, promptSha256 } from '../tokens/token-verifier.js';

const AGENT_ID = 'llama-http-agent';
const MODEL = 'llama-2-tiny-random';

let coordinator: FakeCoordinator;
let signer: TestSigner;
let agent: RunningAgent;

beforeAll(async () => {
  signer = await createTestSigner({ aud: AGENT_ID, model: MODEL });
  coordinator = await startFakeCoordinator({ signers: [signer] });
  agent = await startAgent({
    agentId: AGENT_ID,
    host: '127.0.0.1',
    port: 0,
    coordinator: coordinator.address,
    joinToken: 'join-secret',
    threads: 1,
    maxConcurrentJobs: 1,
    heartbeatIntervalMs: 5000,
    nvidiaSmiPath: '/nonexistent/nvidia-smi',
    drainTimeoutMs: 2000,
    logLevel: (process.env.TEST_LOG_LEVEL as 'silent' | undefined) ?? 'silent',
  });
}, 120_000);

afterAll(async () => {
  await agent?.stop();
  await coordinator?.stop();
});

describe('the HTTP routes of an agent with the real llama-cpp engine', () => {
  it('stream a chat: role chunk, the generated text, finish_reason, usage with the templated prompt tokens, [DONE]', async () => {
    // port 0 → the HTTP port is a free one too, advertised like the gRPC endpoint.
    expect(agent.httpPort).toBeGreaterThan(0);
    expect(agent.httpPort).not.toBe(agent.port);
    expect(agent.httpEndpoint).toBe(`127.0.0.1:${agent.httpPort}`);
    const messages = [{ role: 'user' as const, content: 'Tell me a story' }];
    const token = await signer.sign({
      job_id: 'job-llama-http',
      max_tokens: 8,
      temperature: 1,
      prompt_sha256: promptSha256(''),
      messages_sha256: messagesSha256(messages),
      parameters: { seed: '1' },
    });
    const res = await fetch(`http://${agent.httpEndpoint}/v1/chat/completions?session_token=${encodeURIComponent(token)}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: 'Bearer sk-the-clients-own-api-key' },
      body: JSON.stringify({ model: MODEL, messages, seed: 1, stream: true, stream_options: { include_usage: true } }),
    });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('text/event-stream; charset=utf-8');
    const text = await res.text();
    expect(text.endsWith('data: [DONE]\n\n')).toBe(true);
    type Chunk = { id: string; choices: { delta: { role?: string; content?: string }; finish_reason: string | null }[]; usage: null | Record<string, number> };
    const chunks = text
      .split('\n\n')
      .filter((e) => e.startsWith('data: {'))
      .map((e) => JSON.parse(e.slice('data: '.length)) as Chunk);
    for (const c of chunks) expect(c.id).toBe('chatcmpl-job-llama-http');
    expect(chunks[0]!.choices[0]!.delta).toEqual({ role: 'assistant', content: '' });
    const usage = chunks.at(-1)!;
    expect(usage.choices).toEqual([]);
    const finish = chunks.at(-2)!;
    expect(finish.choices[0]!.delta).toEqual({});
    expect(['stop', 'length']).toContain(finish.choices[0]!.finish_reason);
    const content = chunks
      .slice(1, -2)
      .map((c) => c.choices[0]!.delta.content ?? '')
      .join('');
    expect(content.length).toBeGreaterThan(0);
    expect(usage.usage!.completion_tokens).toBeGreaterThan(0);
    expect(usage.usage!.completion_tokens).toBeLessThanOrEqual(8);
    expect(usage.usage!.prompt_tokens).toBeGreaterThan(0);
    const { prompt_tokens, completion_tokens, total_tokens } = usage.usage!;
    expect(total_tokens).toBe(prompt_tokens! + completion_tokens!);
    for (const c of chunks.slice(0, -1)) expect(c.usage).toBeNull();
  }, 60_000);
});

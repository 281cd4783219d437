import { afterAll, afterEach, beforeAll, describe, expect, it } from '@jest/globals';
import {
  AuthError,
  CapacityError,
  ConnectionError,
  InvalidArgumentError,
  NoAgentsError,
  ProtocolVersionError,
  Status,
  StreamInterruptedError,
  TimeoutError,
  TitanAbortError,
  TitanClient,
  TitanError,
  type GenerationChunk,
} from './index.js';
import { startFakeAgent, startFakeCoordinator, type FakeAgent, type FakeCoordinator } from './test-support/fake-cluster.js';

const MODEL = 'tiny';
const stoppers: Array<() => Promise<void> | void> = [];

async function cluster(agentSpecs: Array<Parameters<typeof startFakeAgent>[0]>, extra: { busyRetryAfterMs?: number; protoVersion?: string } = {}) {
  const agents: FakeAgent[] = [];
  for (const spec of agentSpecs) agents.push(await startFakeAgent(spec));
  const coordinator: FakeCoordinator = await startFakeCoordinator({ agents: () => agents, ...extra });
  const client = new TitanClient({ coordinator: coordinator.address, requestTimeoutMs: 5000 });
  stoppers.push(
    () => client.close(),
    () => coordinator.stop(),
    ...agents.map((a) => () => a.stop()),
  );
  return { agents, coordinator, client };
}

afterEach(async () => {
  for (const stop of stoppers.splice(0).reverse()) await stop();
});

async function collect(iterable: AsyncIterable<GenerationChunk>): Promise<{ chunks: GenerationChunk[]; error?: unknown }> {
  const chunks: GenerationChunk[] = [];
  try {
    for await (const chunk of iterable) chunks.push(chunk);
    return { chunks };
  } catch (error) {
    return { chunks, error };
  }
}

describe('TitanClient.generate (zero-proxy streaming)', () => {
  it('streams every token from the chosen agent in order and ends with stats', async () => {
    const { client } = await cluster([{ agentId: 'a1', tokens: ['Hel', 'lo', ' world'] }]);
    const { chunks, error } = await collect(client.generate({ model: MODEL, prompt: 'hi' }));
    expect(error).toBeUndefined();
    const text = chunks.filter((c) => !c.done).map((c) => c.text);
    expect(text).toEqual(['Hel', 'lo', ' world']);
    expect(chunks.filter((c) => !c.done).map((c) => c.index)).toEqual([0, 1, 2]);
    const last = chunks.at(-1);
    expect(last?.done).toBe(true);
    if (!last?.done) throw new Error('no done chunk');
    expect(last.stats).toMatchObject({ tokens: 3, agentId: 'a1', finishReason: 'stop', attempts: 1, maxTokens: 100, temperature: expect.any(Number) });
    expect(last.stats.jobId).not.toBe('');
    expect(last.stats.clientTimeToFirstTokenMs).toBeGreaterThan(0);
  });

  it('complete() returns the whole text and sends limits and parameters on both hops', async () => {
    const { client, coordinator } = await cluster([{ agentId: 'a1', tokens: ['a', 'b', 'c', 'd'] }]);
    const result = await client.complete({ model: MODEL, prompt: 'x', maxTokens: 2, temperature: 0, parameters: { top_k: 5, seed: 1 } });
    expect(result.text).toBe('ab');
    expect(result.stats.finishReason).toBe('length');
    expect(coordinator.requests[0]).toMatchObject({ maxTokens: 2, temperature: 0, temperatureSet: true, parameters: { top_k: '5', seed: '1' } });
  });

  it('rejects bad input synchronously with InvalidArgumentError naming the field', async () => {
    const { client } = await cluster([{ agentId: 'a1' }]);
    expect(() => client.generate({ model: '', prompt: 'x' })).toThrow(InvalidArgumentError);
    expect(() => client.generate({ model: MODEL, prompt: 'x', temperature: 3 })).toThrow(/temperature/);
    expect(() => client.generate({ model: MODEL, prompt: 'x', maxTokens: 0 })).toThrow(/maxTokens/);
    expect(() => new TitanClient({ coordinator: 'nope' })).toThrow(/coordinator/);
  });

  it('chat sends the messages (and no prompt) to the coordinator and streams the reply; bad messages are InvalidArgumentError naming the path', async () => {
    const { client, coordinator } = await cluster([{ agentId: 'a1' }]);
    const messages = [
      { role: 'system' as const, content: 'Be brief.' },
      { role: 'user' as const, content: 'Hi' },
    ];
    let text = '';
    for await (const chunk of client.chat({ model: MODEL, messages, maxTokens: 2 })) if (!chunk.done) text += chunk.text;
    expect(text).not.toBe('');
    expect(coordinator.requests.at(-1)).toMatchObject({ prompt: '', messages, maxTokens: 2 });
    const fieldOf = (request: unknown) => {
      try {
        client.chat(request as never);
      } catch (error) {
        expect(error).toBeInstanceOf(InvalidArgumentError);
        return (error as InvalidArgumentError).message;
      }
      throw new Error('accepted');
    };
    expect(fieldOf({ model: MODEL, messages: [] })).toBe('messages: must have at least one message');
    expect(fieldOf({ model: MODEL, messages: [messages[0], { role: 'tool', content: 'x' }] })).toBe('messages[1].role: must be system, user or assistant');
    expect(fieldOf({ model: MODEL, messages: [{ role: 'user', content: 7 }] })).toBe('messages[0].content: must be a string');
    expect(fieldOf({ model: MODEL, prompt: 'x' })).toBe('messages: must be an array of messages');
  });

  it('maps the coordinator INVALID_ARGUMENT to InvalidArgumentError with the field', async () => {
    const { client } = await cluster([{ agentId: 'a1' }]);
    const error = await client.complete({ model: MODEL, prompt: 'x', maxTokens: 999_999 }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(InvalidArgumentError);
    expect((error as InvalidArgumentError).field).toBe('max_tokens');
    expect((error as InvalidArgumentError).code).toBe(Status.INVALID_ARGUMENT);
  });
});

describe('failover before the first token', () => {
  it('fails over to a second agent when the first is down, excluding it', async () => {
    const { agents, client, coordinator } = await cluster([{ agentId: 'down' }, { agentId: 'up', tokens: ['ok'] }]);
    await agents[0]?.stop();
    const result = await client.complete({ model: MODEL, prompt: 'x' });
    expect(result.text).toBe('ok');
    expect(result.stats).toMatchObject({ agentId: 'up', attempts: 2 });
    expect(coordinator.requests.map((r) => r.excludeAgentIds)).toEqual([[], ['down']]);
  });

  it('fails over when the agent refuses the token, is draining or is busy', async () => {
    const { client } = await cluster([
      { agentId: 'refuses', refuseTokens: true },
      { agentId: 'draining', draining: true },
      { agentId: 'good', tokens: ['fine'] },
    ]);
    const result = await client.complete({ model: MODEL, prompt: 'x', maxAttempts: 3 });
    expect(result).toMatchObject({ text: 'fine', stats: { agentId: 'good', attempts: 3 } });
  });

  it('gives up after maxAttempts with the last agent error', async () => {
    const { client } = await cluster([{ agentId: 'r1', refuseTokens: true }, { agentId: 'r2', refuseTokens: true }, { agentId: 'ok' }]);
    const error = await client.complete({ model: MODEL, prompt: 'x', maxAttempts: 2 }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(AuthError);
    expect((error as AuthError).code).toBe(Status.UNAUTHENTICATED);
    expect((error as AuthError).message).toMatch(/gave up after 2 attempt/);
  });

  it('reports NoAgentsError (with the agent failure as context) when no other agent is left', async () => {
    const { agents, client } = await cluster([{ agentId: 'only' }]);
    await agents[0]?.stop();
    const error = await client.complete({ model: MODEL, prompt: 'x' }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(NoAgentsError);
    expect((error as NoAgentsError).context.lastAgentError).toBeInstanceOf(ConnectionError);
  });
});

describe('interruptions and cancellation', () => {
  it('never restarts after tokens were delivered: StreamInterruptedError says how many arrived, no text is duplicated', async () => {
    const { agents, client } = await cluster([
      { agentId: 'flaky', tokens: ['one ', 'two ', 'three ', 'four '], failAfterTokens: 2 },
      { agentId: 'spare', tokens: ['SPARE'] },
    ]);
    const { chunks, error } = await collect(client.generate({ model: MODEL, prompt: 'x' }));
    expect(chunks.map((c) => c.text).join('')).toBe('one two ');
    expect(error).toBeInstanceOf(StreamInterruptedError);
    expect(error).toMatchObject({ tokensReceived: 2, agentId: 'flaky', code: Status.INTERNAL });
    expect(agents[1]?.calls()).toBe(0);
  });

  it('counts every token of batched messages (token_count) in tokensReceived', async () => {
    const { client } = await cluster([{ agentId: 'batcher', tokens: ['one two three ', 'four five six ', 'seven '], tokensPerMessage: 3, failAfterTokens: 2 }]);
    const { chunks, error } = await collect(client.generate({ model: MODEL, prompt: 'x' }));
    expect(chunks.map((c) => c.index)).toEqual([0, 3]);
    expect(error).toBeInstanceOf(StreamInterruptedError);
    expect(error).toMatchObject({ tokensReceived: 6, agentId: 'batcher' });
  });

  it('an abort mid-stream cancels the agent stream and frees its slot', async () => {
    const { agents, client } = await cluster([{ agentId: 'a1', tokens: Array.from({ length: 200 }, (_, i) => `t${i} `), tokenDelayMs: 20 }]);
    const controller = new AbortController();
    const received: string[] = [];
    const error = await (async () => {
      for await (const chunk of client.generate({ model: MODEL, prompt: 'x', signal: controller.signal })) {
        received.push(chunk.text);
        if (received.length === 2) {
          expect((await client.agentStatus(agents[0]!.endpoint)).runningJobs).toBe(1);
          controller.abort();
        }
      }
    })().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(TitanAbortError);
    expect((error as Error).name).toBe('AbortError');
    for (let i = 0; i < 50 && agents[0]!.running() > 0; i++) await new Promise((r) => setTimeout(r, 20));
    expect((await client.agentStatus(agents[0]!.endpoint)).runningJobs).toBe(0);
  });

  it('breaking out of the loop also frees the agent slot', async () => {
    const { agents, client } = await cluster([{ agentId: 'a1', tokens: Array.from({ length: 200 }, (_, i) => `t${i} `), tokenDelayMs: 20 }]);
    for await (const chunk of client.generate({ model: MODEL, prompt: 'x' })) {
      if (!chunk.done) break;
    }
    for (let i = 0; i < 50 && agents[0]!.running() > 0; i++) await new Promise((r) => setTimeout(r, 20));
    expect(agents[0]!.running()).toBe(0);
  });

  it('a stream deadline becomes TimeoutError', async () => {
    const agents = [await startFakeAgent({ agentId: 'slow', tokens: ['a', 'b', 'c'], tokenDelayMs: 2000 })];
    const coordinator = await startFakeCoordinator({ agents: () => agents });
    const client = new TitanClient({ coordinator: coordinator.address, streamTimeoutMs: 200 });
    stoppers.push(
      () => client.close(),
      () => coordinator.stop(),
      () => agents[0]!.stop(),
    );
    const error = await client.complete({ model: MODEL, prompt: 'x' }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(TimeoutError);
    expect(error).toMatchObject({ code: Status.DEADLINE_EXCEEDED, timeoutMs: 200 });
  });
});

describe('typed errors from the coordinator', () => {
  it('NoAgentsError names the model', async () => {
    const { client } = await cluster([{ agentId: 'a1', models: ['other'] }]);
    const error = await client.complete({ model: 'missing-model', prompt: 'x' }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(NoAgentsError);
    expect(error).toMatchObject({ model: 'missing-model', code: Status.UNAVAILABLE });
    expect((error as Error).message).toContain('missing-model');
  });

  it('CapacityError carries retryAfterMs from the trailer', async () => {
    const { coordinator } = await cluster([{ agentId: 'a1' }], { busyRetryAfterMs: 1234 });
    // Busy retries off: this is about the error itself (retries: inference/busy-retry.test.ts).
    const client = new TitanClient({ coordinator: coordinator.address, busyRetries: 0 });
    stoppers.push(() => client.close());
    const error = await client.complete({ model: MODEL, prompt: 'x' }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(CapacityError);
    expect(error).toMatchObject({ retryAfterMs: 1234, code: Status.RESOURCE_EXHAUSTED });
  });

  it('ProtocolVersionError carries both versions', async () => {
    const { client } = await cluster([{ agentId: 'a1' }], { protoVersion: 'deadbeefdeadbeef' });
    const error = await client.status().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ProtocolVersionError);
    expect(error).toMatchObject({ serverVersion: 'deadbeefdeadbeef', code: Status.FAILED_PRECONDITION });
    expect((error as ProtocolVersionError).clientVersion).toMatch(/^[0-9a-f]+$/);
  });

  it('ConnectionError when the coordinator cannot be reached; cause keeps the gRPC error', async () => {
    const client = new TitanClient({ coordinator: '127.0.0.1:1' });
    stoppers.push(() => client.close());
    const error = await client.status().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ConnectionError);
    expect(error).toBeInstanceOf(TitanError);
    expect((error as ConnectionError).address).toBe('127.0.0.1:1');
    expect((error as Error).cause).toBeDefined();
  });

  it('an already-aborted signal rejects with AbortError without calling anyone', async () => {
    const { client, coordinator } = await cluster([{ agentId: 'a1' }]);
    const error = await client.complete({ model: MODEL, prompt: 'x', signal: AbortSignal.abort() }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(TitanAbortError);
    expect(coordinator.requests).toHaveLength(0);
  });
});

describe('TitanClient.status', () => {
  let agents: FakeAgent[];
  let coordinator: FakeCoordinator;
  let client: TitanClient;
  beforeAll(async () => {
    agents = [await startFakeAgent({ agentId: 'gpu-1' })];
    coordinator = await startFakeCoordinator({ agents: () => agents });
    client = new TitanClient({ coordinator: coordinator.address });
  });
  afterAll(async () => {
    client.close();
    await coordinator.stop();
    await agents[0]?.stop();
  });

  it('returns friendly agent rows', async () => {
    const status = await client.status();
    expect(status.totalAgents).toBe(1);
    expect(status.agents[0]).toMatchObject({ id: 'gpu-1', state: 'healthy', totalVramMb: 8000, freeVramMb: 6000, models: ['tiny'], tokensPerSecond: 42.5 });
  });

  it("agentStatus() reads an agent's own view directly", async () => {
    const s = await client.agentStatus(agents[0]!.endpoint);
    expect(s).toMatchObject({ agentId: 'gpu-1', state: 'healthy', runningJobs: 0, maxJobs: 4 });
  });
});

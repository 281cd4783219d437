import { afterEach, describe, expect, it } from '@jest/globals';
import { CapacityError, type GenerationStats, InvalidArgumentError, NoAgentsError, Status, StreamInterruptedError, TitanAbortError } from './index.js';
import { SCRIPTED_MODEL, startRealCluster, waitFor, type RealCluster } from '@titancompute/test-support';

let cluster: RealCluster | undefined;
afterEach(async () => {
  await cluster?.stop();
  cluster = undefined;
});

describe('TitanClient against a real coordinator and agents', () => {
  it('streams tokens straight from the agent with exact text and stats', async () => {
    cluster = await startRealCluster([{ agentId: 'agent-a' }]);
    const chunks: string[] = [];
    let stats: GenerationStats | undefined;
    for await (const chunk of cluster.client.generate({ model: SCRIPTED_MODEL, prompt: 'count', maxTokens: 5, temperature: 0 })) {
      if (chunk.done) stats = chunk.stats;
      else chunks.push(chunk.text);
    }
    expect(chunks.join('')).toBe('word0 word1 word2 word3 word4 ');
    expect(stats).toMatchObject({ tokens: 5, agentId: 'agent-a', finishReason: 'length', attempts: 1, maxTokens: 5, temperature: 0 });
  });

  it('an abort mid-stream frees the agent slot (agent GetStatus and coordinator status)', async () => {
    cluster = await startRealCluster([{ agentId: 'agent-a', tokenDelayMs: 20 }]);
    const endpoint = cluster.agents[0]!.endpoint;
    const controller = new AbortController();
    let received = 0;
    const error = await (async () => {
      for await (const chunk of cluster!.client.generate({ model: SCRIPTED_MODEL, prompt: 'p', maxTokens: 500, signal: controller.signal })) {
        if (!chunk.done && ++received === 3) {
          expect((await cluster!.client.agentStatus(endpoint)).runningJobs).toBe(1);
          controller.abort();
        }
      }
    })().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(TitanAbortError);
    await waitFor(async () => (await cluster!.client.agentStatus(endpoint)).runningJobs === 0, 2000, 'the agent to free its slot', {
      intervalMs: 20,
      stopOnError: true,
    });
    await waitFor(async () => (await cluster!.client.status()).agents[0]?.runningJobs === 0, 2000, 'the coordinator to see the free slot', {
      intervalMs: 20,
      stopOnError: true,
    });
  });

  it('fails over to the second agent when the first one cannot be reached', async () => {
    // "a-down" advertises 127.0.0.2 while listening on 127.0.0.1 only: registered and healthy, but unreachable.
    cluster = await startRealCluster([{ agentId: 'a-down', publicHost: '127.0.0.2' }, { agentId: 'b-up' }]);
    const result = await cluster.client.complete({ model: SCRIPTED_MODEL, prompt: 'p', maxTokens: 3 });
    expect(result.text).toBe('word0 word1 word2 ');
    expect(result.stats).toMatchObject({ agentId: 'b-up', attempts: 2 });
  });

  it('CapacityError with retryAfterMs when every agent is busy', async () => {
    cluster = await startRealCluster([{ agentId: 'agent-a', tokenDelayMs: 20, maxConcurrentJobs: 1, maxQueue: 0 }]);
    const controller = new AbortController();
    const first = cluster.client.generate({ model: SCRIPTED_MODEL, prompt: 'p', maxTokens: 500, signal: controller.signal });
    const iterator = first[Symbol.asyncIterator]();
    await iterator.next();
    const error = await cluster.client.complete({ model: SCRIPTED_MODEL, prompt: 'q', maxAttempts: 1 }).catch((e: unknown) => e);
    controller.abort();
    await iterator.next().catch(() => undefined);
    expect(error).toBeInstanceOf(CapacityError);
    expect((error as CapacityError).code).toBe(Status.RESOURCE_EXHAUSTED);
    expect((error as CapacityError).retryAfterMs).toBeGreaterThan(0);
  });

  it('NoAgentsError names an unknown model; InvalidArgumentError names a bad field', async () => {
    cluster = await startRealCluster([{ agentId: 'agent-a' }]);
    const noAgents = await cluster.client.complete({ model: 'no-such-model', prompt: 'p' }).catch((e: unknown) => e);
    expect(noAgents).toBeInstanceOf(NoAgentsError);
    expect((noAgents as Error).message).toContain('no-such-model');
    const invalid = await cluster.client.complete({ model: SCRIPTED_MODEL, prompt: 'p', maxTokens: 100_000 }).catch((e: unknown) => e);
    expect(invalid).toBeInstanceOf(InvalidArgumentError);
    expect((invalid as Error).message).toMatch(/max_tokens/);
  });

  it('an agent going away mid-stream gives StreamInterruptedError with the token count, and no duplicated text', async () => {
    cluster = await startRealCluster([{ agentId: 'a-first', tokenDelayMs: 20 }, { agentId: 'b-spare' }]);
    const texts: string[] = [];
    let stopping: Promise<void> | undefined;
    const error = await (async () => {
      for await (const chunk of cluster!.client.generate({ model: SCRIPTED_MODEL, prompt: 'p', maxTokens: 2000 })) {
        if (chunk.done) continue;
        texts.push(chunk.text);
        if (texts.length === 3) stopping = cluster!.agents[0]!.stop('test'); // drains for 500 ms, then cuts the stream
      }
    })().catch((e: unknown) => e);
    await stopping;
    expect(error).toBeInstanceOf(StreamInterruptedError);
    expect(error).toMatchObject({ agentId: 'a-first', tokensReceived: texts.length });
    expect(texts).toEqual(texts.map((_, i) => `word${i} `)); // one stream, in order, never restarted
    expect((await cluster.client.agentStatus(cluster.agents[1]!.endpoint)).totalRequestsProcessed).toBe(0);
  });

  it('chat: the messages reach the coordinator and the agent, which only stream for the messages the token was signed for', async () => {
    cluster = await startRealCluster([{ agentId: 'agent-a' }]);
    const messages = [
      { role: 'system' as const, content: 'Be brief.' },
      { role: 'user' as const, content: 'Count.' },
    ];
    // The coordinator refuses an empty prompt without messages, and the agent refuses (PERMISSION_DENIED)
    // messages other than the hashed ones: a completed chat proves both legs carried them.
    let text = '';
    let stats: GenerationStats | undefined;
    for await (const chunk of cluster.client.chat({ model: SCRIPTED_MODEL, messages, maxTokens: 3, temperature: 0 })) {
      if (chunk.done) stats = chunk.stats;
      else text += chunk.text;
    }
    expect(text).toBe('word0 word1 word2 ');
    expect(stats).toMatchObject({ tokens: 3, agentId: 'agent-a', attempts: 1 });
    expect(() => cluster!.client.chat({ model: SCRIPTED_MODEL, messages: [{ role: 'tool' as never, content: 'x' }] })).toThrow(InvalidArgumentError);
  });
});

import { afterEach, describe, expect, it } from '@jest/globals';
import { createServer, ServerError, Status } from 'nice-grpc';
import {
  AgentServiceDefinition,
  CoordinatorServiceDefinition,
  createProtoVersionServerMiddleware,
  type AgentServiceImplementation,
  type CoordinatorServiceImplementation,
  type StreamResponse,
} from '@titancompute/protocol';
import { CapacityError, StreamInterruptedError, TitanAbortError, TitanClient, type TitanClientOptions } from '../index.js';

/** What the scripted coordinator answers, call by call: a retry hint (busy) or 'grant'. */
type Answer = { busyRetryAfterMs: number } | 'grant';

const stops: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const stop of stops.splice(0).reverse()) await stop();
});

const message = (text: string, i: number): StreamResponse => ({
  sessionToken: '',
  content: text,
  token: text,
  done: false,
  createdAt: Date.now(),
  metadata: {},
  tokenIndex: i,
  tokenCount: 1,
  stats: undefined,
});

/**
 * A scripted coordinator (answers in order, the last one repeats) and an agent that streams
 * `tokens` and then either finishes or fails with RESOURCE_EXHAUSTED (`busyAfterTokens`).
 */
async function scripted(answers: Answer[], agent: { busyAfterTokens?: number } = {}, clientOptions: TitanClientOptions = {}) {
  let coordinatorCalls = 0;
  let agentCalls = 0;
  const agentImpl: AgentServiceImplementation = {
    async *streamInference(_request, context) {
      agentCalls++;
      const tokens = ['one ', 'two '];
      for (const [i, t] of tokens.entries()) {
        if (agent.busyAfterTokens !== undefined && i >= agent.busyAfterTokens) {
          context.trailer.set('retry-after-ms', '5');
          throw new ServerError(Status.RESOURCE_EXHAUSTED, 'agent is busy');
        }
        yield message(t, i);
      }
      yield {
        ...message('', tokens.length),
        done: true,
        stats: { tokensGenerated: 2, timeToFirstTokenMs: 1, tokensPerSecond: 100, agentId: 'a1', jobId: 'j', finishReason: 'stop', promptTokens: 1 },
      };
    },
    async getStatus() {
      throw new ServerError(Status.UNIMPLEMENTED, 'scripted');
    },
  };
  const agentServer = createServer().use(createProtoVersionServerMiddleware());
  agentServer.add(AgentServiceDefinition, agentImpl);
  const agentPort = await agentServer.listen('127.0.0.1:0');
  const unimplemented = async (): Promise<never> => {
    throw new ServerError(Status.UNIMPLEMENTED, 'scripted');
  };
  const coordinatorImpl: CoordinatorServiceImplementation = {
    registerAgent: unimplemented,
    // eslint-disable-next-line require-yield
    async *reportHealth() {
      throw new ServerError(Status.UNIMPLEMENTED, 'scripted');
    },
    querySystemStatus: unimplemented,
    getPublicKey: unimplemented,
    deregisterAgent: unimplemented,
    async requestInference(request, context) {
      const answer = answers[Math.min(coordinatorCalls, answers.length - 1)]!;
      coordinatorCalls++;
      if (answer !== 'grant') {
        context.trailer.set('retry-after-ms', String(answer.busyRetryAfterMs));
        throw new ServerError(Status.RESOURCE_EXHAUSTED, `all agents serving ${request.model} are busy`);
      }
      return {
        agentEndpoint: `127.0.0.1:${agentPort}`,
        sessionToken: 't',
        expiresAt: 0,
        jobId: `j${coordinatorCalls}`,
        estimatedRttMs: 1,
        agentId: 'a1',
        maxTokens: 2,
        temperature: 0.7,
      };
    },
  };
  const coordinatorServer = createServer().use(createProtoVersionServerMiddleware());
  coordinatorServer.add(CoordinatorServiceDefinition, coordinatorImpl);
  const coordinatorPort = await coordinatorServer.listen('127.0.0.1:0');
  const client = new TitanClient({ coordinator: `127.0.0.1:${coordinatorPort}`, requestTimeoutMs: 5000, ...clientOptions });
  stops.push(
    () => agentServer.forceShutdown(),
    () => coordinatorServer.forceShutdown(),
    () => client.close(),
  );
  return { client, coordinatorCalls: () => coordinatorCalls, agentCalls: () => agentCalls };
}

describe('busy answers are retried before the first token only', () => {
  it('retries RESOURCE_EXHAUSTED from the coordinator after its retry-after-ms, then streams', async () => {
    const s = await scripted([{ busyRetryAfterMs: 20 }, { busyRetryAfterMs: 20 }, 'grant']);
    const result = await s.client.complete({ model: 'm', prompt: 'p' });
    expect(result.text).toBe('one two ');
    expect(result.stats.attempts).toBe(1); // waiting out a busy answer is not a failover attempt
    expect(s.coordinatorCalls()).toBe(3);
  });

  it('retries RESOURCE_EXHAUSTED from the agent before the first token', async () => {
    const s = await scripted(['grant'], { busyAfterTokens: 0 }, { busyRetries: 2 });
    const error = await s.client.complete({ model: 'm', prompt: 'p', maxAttempts: 1 }).catch((e: unknown) => e);
    // Still busy after the 2 retries (and no other agent to fail over to): 3 grants asked, 3 streams tried, then the CapacityError.
    expect(error).toBeInstanceOf(CapacityError);
    expect((error as Error).message).toMatch(/^agent is busy \(retry after 5 ms\) \(agent 127\.0\.0\.1:\d+\) \(retried 2 times over \d+ ms\)/);
    expect((error as Error).message.match(/busy/g)).toHaveLength(1);
    expect(s.coordinatorCalls()).toBe(3);
    expect(s.agentCalls()).toBe(3);
  });

  it('never retries after the first token: a busy break mid-stream is a StreamInterruptedError', async () => {
    const s = await scripted(['grant'], { busyAfterTokens: 1 });
    const chunks: string[] = [];
    const error = await (async () => {
      for await (const chunk of s.client.generate({ model: 'm', prompt: 'p' })) if (!chunk.done) chunks.push(chunk.text);
    })().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(StreamInterruptedError);
    expect(chunks).toEqual(['one ']);
    expect(s.coordinatorCalls()).toBe(1);
    expect(s.agentCalls()).toBe(1);
  });

  it('is bounded by busyRetries and by busyRetryMaxWaitMs', async () => {
    const byCount = await scripted([{ busyRetryAfterMs: 5 }], {}, { busyRetries: 3 });
    const e1 = await byCount.client.complete({ model: 'm', prompt: 'p' }).catch((e: unknown) => e);
    expect(e1).toBeInstanceOf(CapacityError);
    expect(byCount.coordinatorCalls()).toBe(4);
    expect((e1 as CapacityError).retryAfterMs).toBe(5);
    // A hint longer than the wait budget is not waited at all.
    const byWait = await scripted([{ busyRetryAfterMs: 60_000 }], {}, { busyRetryMaxWaitMs: 1000 });
    const e2 = await byWait.client.complete({ model: 'm', prompt: 'p' }).catch((e: unknown) => e);
    expect(e2).toBeInstanceOf(CapacityError);
    expect(byWait.coordinatorCalls()).toBe(1);
    // busyRetries: 0 turns retrying off.
    const off = await scripted([{ busyRetryAfterMs: 5 }], {}, { busyRetries: 0 });
    await expect(off.client.complete({ model: 'm', prompt: 'p' })).rejects.toBeInstanceOf(CapacityError);
    expect(off.coordinatorCalls()).toBe(1);
  });

  it('an abort while waiting to retry ends the generation with TitanAbortError', async () => {
    const s = await scripted([{ busyRetryAfterMs: 5000 }]);
    const controller = new AbortController();
    const pending = s.client.complete({ model: 'm', prompt: 'p', signal: controller.signal }).catch((e: unknown) => e);
    for (let i = 0; i < 200 && s.coordinatorCalls() === 0; i++) await new Promise((r) => setTimeout(r, 10));
    controller.abort();
    expect(await pending).toBeInstanceOf(TitanAbortError);
    expect(s.coordinatorCalls()).toBe(1);
  });

  it('rejects a bad retry option naming it', () => {
    expect(() => new TitanClient({ busyRetries: -1 })).toThrow(/busyRetries: must be an integer >= 0/);
    expect(() => new TitanClient({ busyRetryMaxWaitMs: 1.5 })).toThrow(/busyRetryMaxWaitMs/);
  });
});

import { createServer, type Server, type Socket } from 'node:net';
import { afterEach, describe, expect, it } from '@jest/globals';
import { freePort } from '@titancompute/test-support/free-port';
import { ClusterUnavailableError, ConnectionError, StreamInterruptedError, TitanAbortError } from './errors.js';
import { startFakeAgent, startFakeCoordinator, type FakeAgent, type FakeCoordinator } from './test-support/fake-cluster.js';
import { TitanClient } from './titan-client.js';

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!();
});

async function agent(spec: Parameters<typeof startFakeAgent>[0]): Promise<FakeAgent> {
  const a = await startFakeAgent(spec);
  cleanups.push(() => a.stop());
  return a;
}

async function coordinator(options: Parameters<typeof startFakeCoordinator>[0]): Promise<FakeCoordinator> {
  const c = await startFakeCoordinator(options);
  cleanups.push(() => c.stop());
  return c;
}

function client(options: ConstructorParameters<typeof TitanClient>[0]): TitanClient {
  const c = new TitanClient({ apiKey: '', ...options });
  cleanups.push(() => c.close());
  return c;
}

/** A TCP server that accepts connections and never speaks: a coordinator whose connection never gets ready. */
async function silentServer(): Promise<string> {
  const sockets: Socket[] = [];
  const server: Server = createServer((s) => sockets.push(s));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  cleanups.push(
    () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  );
  const address = server.address();
  return `127.0.0.1:${typeof address === 'object' && address ? address.port : 0}`;
}

describe('a client with several coordinators', () => {
  it('skips a dead first address, generates through the second, and starts there next time', async () => {
    const gpu = await agent({ agentId: 'gpu-1', tokens: ['a', 'b', 'c'] });
    const deadPort = await freePort();
    const alive = await coordinator({ agents: () => [gpu] });
    const titan = client({ coordinator: `127.0.0.1:${deadPort},${alive.address}` });
    expect(titan.coordinatorAddresses).toEqual([`127.0.0.1:${deadPort}`, alive.address]);
    expect(titan.coordinatorAddress).toBe(`127.0.0.1:${deadPort}`);

    const first = await titan.complete({ model: 'tiny', prompt: 'hi' });
    expect(first.text).toBe('abc');
    expect(first.stats.attempts).toBe(1);
    expect(alive.requests).toHaveLength(1);
    expect(titan.coordinatorAddress).toBe(alive.address);

    // The dead address comes back: the client stays with the one that answered.
    const revived = await coordinator({ agents: () => [gpu], port: deadPort });
    await titan.complete({ model: 'tiny', prompt: 'again' });
    expect(alive.requests).toHaveLength(2);
    expect(revived.requests).toHaveLength(0);
  });

  it('takes an array too, and skips a coordinator that answers UNAVAILABLE (no agent it can use)', async () => {
    const gpu = await agent({ agentId: 'gpu-1' });
    const empty = await coordinator({ agents: () => [] });
    const full = await coordinator({ agents: () => [gpu] });
    const titan = client({ coordinator: [empty.address, full.address] });
    const done = await titan.complete({ model: 'tiny', prompt: 'x', maxTokens: 2 });
    expect(done.stats.agentId).toBe('gpu-1');
    expect([empty.requests.length, full.requests.length]).toEqual([1, 1]);
  });

  it('moves on when a coordinator’s connection never gets ready before the deadline', async () => {
    const gpu = await agent({ agentId: 'gpu-1' });
    const silent = await silentServer();
    const alive = await coordinator({ agents: () => [gpu] });
    const titan = client({ coordinator: `${silent},${alive.address}`, requestTimeoutMs: 500 });
    const done = await titan.complete({ model: 'tiny', prompt: 'x', maxTokens: 2 });
    expect(done.stats.agentId).toBe('gpu-1');
    expect(titan.coordinatorAddress).toBe(alive.address);
  });

  it('with every coordinator dead: ClusterUnavailableError naming each address', async () => {
    const [p1, p2] = [await freePort(), await freePort()];
    const titan = client({ coordinator: `127.0.0.1:${p1},127.0.0.1:${p2}` });
    const error = (await titan.complete({ model: 'tiny', prompt: 'x' }).catch((e: unknown) => e)) as ClusterUnavailableError;
    expect(error).toBeInstanceOf(ClusterUnavailableError);
    expect(error).toBeInstanceOf(ConnectionError);
    expect(error.message).toMatch(
      new RegExp(`^no coordinator answered \\(tried 2\\): 127\\.0\\.0\\.1:${p1} \\(connection refused.*\\); 127\\.0\\.0\\.1:${p2} \\(connection refused`),
    );
    expect(error.addresses).toEqual([`127.0.0.1:${p1}`, `127.0.0.1:${p2}`]);
    const status = await titan.status().catch((e: unknown) => e);
    expect(status).toBeInstanceOf(ClusterUnavailableError);
  });

  it('never asks again once a token was streamed: the agent dies mid-stream, the error surfaces, one RequestInference in all', async () => {
    const gpu = await agent({ agentId: 'gpu-1', tokens: Array.from({ length: 50 }, (_, i) => `t${i} `), tokenDelayMs: 20 });
    const [a, b] = [await coordinator({ agents: () => [gpu] }), await coordinator({ agents: () => [gpu] })];
    const titan = client({ coordinator: `${a.address},${b.address}`, maxAttempts: 3 });
    const texts: string[] = [];
    const error = await (async () => {
      try {
        for await (const chunk of titan.generate({ model: 'tiny', prompt: 'x', maxTokens: 50 })) {
          if (chunk.done) break;
          texts.push(chunk.text);
          if (texts.length === 2) void gpu.stop();
        }
      } catch (e) {
        return e;
      }
      return undefined;
    })();
    expect(error).toBeInstanceOf(StreamInterruptedError);
    expect(texts.length).toBeGreaterThanOrEqual(2);
    expect(a.requests.length + b.requests.length).toBe(1);
  });

  it('is abortable while trying: the caller’s abort ends it, later coordinators are not asked', async () => {
    const gpu = await agent({ agentId: 'gpu-1' });
    const silent = await silentServer();
    const alive = await coordinator({ agents: () => [gpu] });
    const titan = client({ coordinator: `${silent},${alive.address}`, requestTimeoutMs: 5000 });
    const controller = new AbortController();
    setTimeout(() => controller.abort(), 100);
    const error = await titan.complete({ model: 'tiny', prompt: 'x', signal: controller.signal }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(TitanAbortError);
    expect(alive.requests).toHaveLength(0);
  });

  it('status() asks the coordinators in order', async () => {
    const gpu = await agent({ agentId: 'gpu-1' });
    const deadPort = await freePort();
    const alive = await coordinator({ agents: () => [gpu] });
    const titan = client({ coordinator: `127.0.0.1:${deadPort},${alive.address}` });
    expect((await titan.status()).agents.map((a) => a.id)).toEqual(['gpu-1']);
    expect(titan.coordinatorAddress).toBe(alive.address);
  });
});

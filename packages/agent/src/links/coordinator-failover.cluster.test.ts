/**
 * An agent with several real coordinators (`startCoordinator`, in this process, on free ports):
 * its home stops, it is registered and streaming on another within 2 s, and work goes on there.
 * With `--store postgres` (one database, one keyring secret) a token signed with a key rotated
 * after the move verifies on the agent: the agent fetches the unknown kid from its new home. The
 * PostgreSQL tests follow the coordinator's rule: skipped with a line saying so when PostgreSQL is
 * unreachable, required when CI=true.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from '@jest/globals';
import { createClientFactory } from 'nice-grpc';
import { TitanClient } from '@titancompute/client';
import { DEFAULT_ISSUER, signSessionToken, startCoordinator, type CoordinatorOptions, type RunningCoordinator } from '@titancompute/coordinator';
import { CoordinatorServiceDefinition, createProtoVersionClientMiddleware, createTitanChannel } from '@titancompute/protocol';
// The coordinator's own PostgreSQL test helpers and rotate-key (not part of its public API).
import { openCoordinatorStore, rotateCoordinatorKey } from '../../../coordinator/src/store/coordinator-store.js';
import { createTestDatabase, postgresAvailable, testKeyringSecret, type TestDatabase } from '@titancompute/test-support/postgres';
import { startAgent, type RunningAgent } from '../agent.js';
import { collect, createAgentClient } from '../test-support/agent-client.js';
import { createFakeEngine } from '../test-support/fake-engine.js';

const AGENT_ID = 'ha-agent';
const JOIN_TOKEN = 'ha-join-token';
/** The issue's contract: registered and streaming on another coordinator within 2 s of the home's stop. */
const FAILOVER_BOUND_MS = 2000;

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!();
});

function tempDir(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

async function coordinator(extra: Partial<CoordinatorOptions> = {}): Promise<RunningCoordinator> {
  const c = await startCoordinator({
    host: '127.0.0.1',
    port: 0,
    httpPort: 0,
    dataDir: tempDir('titan-ha-coord-'),
    joinToken: JOIN_TOKEN,
    heartbeatIntervalMs: 1000,
    shutdownTimeoutMs: 500,
    logLevel: 'silent',
    ...extra,
  });
  cleanups.push(() => c.stop());
  return c;
}

/** What `c` says of the agent now (QuerySystemStatus), undefined when it does not list it. */
async function agentOn(c: RunningCoordinator) {
  const channel = createTitanChannel(c.address);
  try {
    const client = createClientFactory().use(createProtoVersionClientMiddleware()).create(CoordinatorServiceDefinition, channel);
    const status = await client.querySystemStatus({ includeAgents: true }, { signal: AbortSignal.timeout(2000) });
    return status.agents.find((a) => a.agentId === AGENT_ID);
  } finally {
    channel.close();
  }
}

/** Polls `probe` every 20 ms until it is true (errors count as false); returns the ms it took. */
async function waitUntil(probe: () => Promise<boolean> | boolean, what: string, timeoutMs = 10_000): Promise<number> {
  const start = Date.now();
  for (;;) {
    if (await Promise.resolve(probe()).catch(() => false)) return Date.now() - start;
    if (Date.now() - start > timeoutMs) throw new Error(`not in ${timeoutMs} ms: ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

async function agentWith(coordinators: string, extra: Partial<Parameters<typeof startAgent>[0]> = {}): Promise<RunningAgent> {
  const agent = await startAgent({
    agentId: AGENT_ID,
    host: '127.0.0.1',
    port: 0,
    httpPort: 0,
    dataDir: tempDir('titan-ha-agent-'),
    coordinator: coordinators,
    joinToken: JOIN_TOKEN,
    engine: createFakeEngine({ models: ['fake-model'], tokenDelayMs: 2 }),
    heartbeatIntervalMs: 200,
    registerBackoffInitialMs: 50,
    registerBackoffMaxMs: 500,
    keyRefetchIntervalMs: 100,
    drainTimeoutMs: 500,
    nvidiaSmiPath: '/nonexistent/nvidia-smi',
    logLevel: 'silent',
    ...extra,
  });
  cleanups.push(() => agent.stop());
  return agent;
}

/** Stops `home`, then waits until `next` has the agent registered and its health stream up; returns the ms since the stop began. */
async function stopAndWaitForMove(home: RunningCoordinator, next: RunningCoordinator, agent: RunningAgent): Promise<number> {
  const stoppedAt = Date.now();
  const stopping = home.stop();
  await waitUntil(async () => {
    const seen = await agentOn(next);
    // Registered there, and a health update applied after the stop began.
    return seen !== undefined && Number(seen.lastHeartbeat) >= stoppedAt && agent.coordinator === next.address;
  }, 'the agent registered and streaming on the next coordinator');
  const elapsed = Date.now() - stoppedAt;
  await stopping;
  return elapsed;
}

describe('an agent with three real coordinators (each its own SQLite, one join token)', () => {
  it('is registered and streaming on the next one within 2 s of its home stopping, and serves and reports jobs granted there', async () => {
    const [a, b, c] = [await coordinator(), await coordinator(), await coordinator()];
    const agent = await agentWith(`${a.address},${b.address},${c.address}`);
    await waitUntil(async () => (await agentOn(a))?.status === 'healthy', 'the agent healthy on A');
    expect(agent.coordinator).toBe(a.address);
    expect(await agentOn(b)).toBeUndefined();

    const elapsed = await stopAndWaitForMove(a, b, agent);
    expect(elapsed).toBeLessThanOrEqual(FAILOVER_BOUND_MS);
    expect(await agentOn(c)).toBeUndefined();

    // B verifies the endpoint, then routes to it; the SDK skips the dead A. B's own keys verify
    // on the agent (it fetched them on registering there), and the job's outcome reaches B.
    await waitUntil(async () => (await agentOn(b))?.status === 'healthy', 'the agent healthy on B');
    const client = new TitanClient({ coordinator: `${a.address},${b.address}`, requestTimeoutMs: 3000, maxAttempts: 1 });
    cleanups.push(() => client.close());
    const done = await client.complete({ model: 'fake-model', prompt: 'hi', maxTokens: 5 });
    expect(done.stats).toMatchObject({ agentId: AGENT_ID, tokens: 5 });
    expect(client.coordinatorAddress).toBe(b.address);
    await waitUntil(async () => ((await agentOn(b))?.tokensPerSecond ?? 0) > 0, "the job's outcome counted by B");
  });
});

const pgUp = await postgresAvailable('agent failover across coordinator replicas on PostgreSQL');
const describePg = pgUp ? describe : () => undefined;

describePg('an agent with two coordinator replicas on one PostgreSQL database (one keyring)', () => {
  let db: TestDatabase | undefined;
  afterEach(async () => {
    await db?.drop();
    db = undefined;
  });

  it('after a move, a token signed with a key rotated meanwhile verifies: the agent fetches the unknown kid from its new home', async () => {
    db = await createTestDatabase();
    const secret = testKeyringSecret();
    const replica = () => coordinator({ store: 'postgres', postgresUrl: db!.url, keyringSecret: secret });
    const [a, b] = [await replica(), await replica()];
    const agent = await agentWith(`${a.address},${b.address}`);
    await waitUntil(async () => agent.coordinator === a.address && (await agentOn(a)) !== undefined, 'the agent registered with A');

    expect(await stopAndWaitForMove(a, b, agent)).toBeLessThanOrEqual(FAILOVER_BOUND_MS);

    // A new signing key, made elsewhere; B publishes it at once (LISTEN/NOTIFY). The agent has
    // never seen that kid, and A, the home it fetched keys from first, is gone.
    const keyOf = async (c: RunningCoordinator) => {
      const channel = createTitanChannel(c.address);
      try {
        return (await createClientFactory().use(createProtoVersionClientMiddleware()).create(CoordinatorServiceDefinition, channel).getPublicKey({})).keyId;
      } finally {
        channel.close();
      }
    };
    const before = await keyOf(b);
    const { kid } = await rotateCoordinatorKey({
      kind: 'postgres',
      dataDir: tempDir('titan-ha-rotate-'),
      postgresUrl: db.url,
      keyringSecret: secret,
      tokenTtlMs: 300_000,
    });
    expect(kid).not.toBe(before);
    await waitUntil(async () => (await keyOf(b)) === kid, 'B publishing the rotated key', 5000);
    // Past the agent's refetch rate limit (keyRefetchIntervalMs: 100).
    await new Promise((r) => setTimeout(r, 150));

    // Signed with the cluster's keyring, as any replica signs (not through a replica's scheduler,
    // which is not what this test is about).
    const store = await openCoordinatorStore({
      kind: 'postgres',
      dataDir: tempDir('titan-ha-signer-'),
      postgresUrl: db.url,
      keyringSecret: secret,
      tokenTtlMs: 300_000,
    });
    cleanups.push(() => store.close());
    expect(store.keyring.current().kid).toBe(kid);
    const prompt = 'after the rotation';
    const { token } = await signSessionToken(
      store.keyring,
      { agentId: AGENT_ID, clientId: 'ha-test', jobId: 'rotated-job', model: 'fake-model', maxTokens: 3, temperature: 0.7, prompt },
      { issuer: DEFAULT_ISSUER, ttlMs: 60_000 },
    );
    const { client, channel } = createAgentClient(agent.endpoint);
    cleanups.push(() => channel.close());
    const msgs = await collect(client.streamInference({ sessionToken: token, model: 'fake-model', prompt, maxTokens: 0, temperature: 0, stream: true }));
    expect(msgs.at(-1)).toMatchObject({ done: true, stats: { tokensGenerated: 3, jobId: 'rotated-job' } });
  });
});

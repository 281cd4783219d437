import { readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from '@jest/globals';
import { createClientFactory, Metadata, Status, type ClientError } from 'nice-grpc';
import { TitanClient } from '@titancompute/client';
import { AdminServiceDefinition, createProtoVersionClientMiddleware, type AdminServiceClient } from '@titancompute/protocol';
import { createScriptedEngine, SCRIPTED_MODEL, startAgent, type RunningAgent } from '@titancompute/test-support';
import { expectGrpcError } from '../test-support/expect-grpc-error.js';
import { startFakeAgent, waitUntilVerified, type FakeAgent } from '../test-support/fake-agent.js';
import { makeTempDir, startTestCoordinator, waitFor, type TestCoordinator } from '../test-support/test-coordinator.js';
import { createTestDatabase, postgresAvailable, testKeyringSecret, type TestDatabase } from '@titancompute/test-support/postgres';
import { rotateCoordinatorKey } from './coordinator-store.js';

const pgUp = await postgresAvailable('coordinator replicas on PostgreSQL');
const describePg = pgUp ? describe : () => undefined;

/**
 * Three coordinators in one process on one PostgreSQL database (each its own data dir and
 * ports), as replicas behind a load balancer would run.
 */
describePg('three coordinator replicas on one PostgreSQL database', () => {
  let db: TestDatabase;
  let secret: string;
  let replicas: TestCoordinator[] = [];
  let fakes: FakeAgent[] = [];
  const agents: RunningAgent[] = [];
  const clients: TitanClient[] = [];
  const dirs: string[] = [];

  beforeEach(async () => {
    db = await createTestDatabase();
    secret = testKeyringSecret();
    // One at a time is not required (migrations take an advisory lock): start them together.
    replicas = await Promise.all(
      ['a', 'b', 'c'].map(() => startTestCoordinator({ store: 'postgres', postgresUrl: db.url, keyringSecret: secret, auth: 'keys', maxClientShare: 1 })),
    );
  });
  afterEach(async () => {
    for (const c of clients.splice(0)) c.close();
    for (const f of fakes.splice(0)) await f.close();
    for (const a of agents.splice(0)) await a.stop();
    for (const r of replicas.splice(0)) await r.stop(true);
    for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
    await db.drop();
  });

  const admin = (r: TestCoordinator): AdminServiceClient =>
    createClientFactory().use(createProtoVersionClientMiddleware()).create(AdminServiceDefinition, r.channel);
  const asAdmin = (r: TestCoordinator) => ({ metadata: Metadata({ authorization: `Bearer ${r.coordinator.adminToken}` }) });
  const createKey = async (r: TestCoordinator, name: string, requestsPerMinute = 0) =>
    (await admin(r).createApiKey({ name, requestsPerMinute }, asAdmin(r))).secret;
  const ask = (r: TestCoordinator, key: string) =>
    r.client.requestInference({ clientId: 'c', model: 'tiny', prompt: 'hi' }, { metadata: Metadata({ authorization: `Bearer ${key}` }) });
  /** One fake agent serving `tiny` (200 slots) registered with each replica. */
  const withFakeAgents = async () => {
    fakes = await Promise.all(
      replicas.map((r, i) => startFakeAgent({ coordinatorAddress: r.coordinator.address, joinToken: 'test-join-token', agentId: `fake-${i}`, maxJobs: 200 })),
    );
  };
  const [A, B, C] = [0, 1, 2];

  it('a key created on replica A works on B and C; revoked on B, A refuses it', async () => {
    await withFakeAgents();
    const key = await createKey(replicas[A]!, 'shared');
    for (const r of replicas) expect((await ask(r, key)).agentId).toMatch(/^fake-/);
    await admin(replicas[B]!).revokeApiKey({ key: 'shared' }, asAdmin(replicas[B]!));
    await expectGrpcError(ask(replicas[A]!, key), Status.UNAUTHENTICATED, /was revoked/);
    await expectGrpcError(ask(replicas[C]!, key), Status.UNAUTHENTICATED, /was revoked/);
  });

  it('an rpm-30 key sending 100 requests spread over the three replicas gets exactly 30 accepted; the others a true Retry-After', async () => {
    await withFakeAgents();
    const key = await createKey(replicas[B]!, 'rpm-30', 30);
    const trailers: Metadata[] = [];
    const outcomes = await Promise.allSettled(
      Array.from({ length: 100 }, (_, i) =>
        replicas[i % 3]!.client.requestInference(
          { clientId: 'c', model: 'tiny', prompt: 'hi' },
          { metadata: Metadata({ authorization: `Bearer ${key}` }), onTrailer: (t) => trailers.push(t) },
        ),
      ),
    );
    const accepted = outcomes.filter((o) => o.status === 'fulfilled');
    const refused = outcomes.flatMap((o) => (o.status === 'rejected' ? [o.reason as ClientError] : []));
    expect(accepted.length).toBe(30);
    expect(refused.length).toBe(70);
    for (const err of refused) {
      expect(err.code).toBe(Status.RESOURCE_EXHAUSTED);
      expect(err.details).toMatch(/exceeded its requests per minute limit of 30 \(used 30\)/);
    }
    const retryAfter = trailers.map((t) => t.get('retry-after-ms')).filter((v): v is string => v !== undefined);
    expect(retryAfter).toHaveLength(70);
    // The oldest grant was made moments ago: the window frees within the minute, not before ~a minute.
    for (const v of retryAfter) expect(Number(v)).toBeGreaterThan(45_000);
    for (const v of retryAfter) expect(Number(v)).toBeLessThanOrEqual(60_000);
    // Every replica granted some: the limit is the cluster's, not each replica's.
    expect(new Set(accepted.map((o) => (o as PromiseFulfilledResult<{ agentId: string }>).value.agentId)).size).toBe(3);
  });

  it('a token signed by replica B verifies on a real agent registered with replica A, before and after a rotation made elsewhere', async () => {
    const agentDir = makeTempDir();
    dirs.push(agentDir);
    const agent = await startAgent({
      agentId: 'real-1',
      host: '127.0.0.1',
      port: 0,
      httpPort: 0,
      dataDir: agentDir,
      coordinator: replicas[A]!.coordinator.address,
      joinToken: replicas[A]!.coordinator.joinToken,
      engine: createScriptedEngine({ tokenDelayMs: 1 }),
      maxConcurrentJobs: 4,
      heartbeatIntervalMs: 200,
      drainTimeoutMs: 500,
      logLevel: 'silent',
    });
    agents.push(agent);
    await waitUntilVerified(replicas[A]!.client, 'real-1');
    // Replica B learns of the same agent (same id, same credential: the shared identity store
    // accepts it) at the same endpoint, so B schedules to it and signs its tokens.
    const credential = readFileSync(join(agentDir, 'agent-credential'), 'utf8').trim();
    fakes.push(
      await startFakeAgent({
        coordinatorAddress: replicas[B]!.coordinator.address,
        joinToken: 'test-join-token',
        agentId: 'real-1',
        credential,
        endpoint: agent.endpoint,
        serve: false,
        models: [SCRIPTED_MODEL],
        maxJobs: 4,
      }),
    );
    await waitUntilVerified(replicas[B]!.client, 'real-1');
    // Another machine claiming that id (another credential) is refused on every replica.
    await expectGrpcError(
      startFakeAgent({ coordinatorAddress: replicas[C]!.coordinator.address, joinToken: 'test-join-token', agentId: 'real-1', serve: false }),
      Status.PERMISSION_DENIED,
      /bound to another agent's credential/,
    );

    const key = await createKey(replicas[C]!, 'client');
    const viaB = new TitanClient({ coordinator: replicas[B]!.coordinator.address, apiKey: key, requestTimeoutMs: 5000, maxAttempts: 1 });
    clients.push(viaB);
    const kidOf = async (r: TestCoordinator) => (await r.client.getPublicKey({})).keyId;
    const before = await kidOf(replicas[B]!);
    expect(await kidOf(replicas[A]!)).toBe(before);
    const first = await viaB.complete({ model: SCRIPTED_MODEL, prompt: 'hi', maxTokens: 3 });
    expect(first.text).toMatch(/word0/);
    expect(first.stats.agentId).toBe('real-1');

    const { kid } = await rotateCoordinatorKey({
      kind: 'postgres',
      dataDir: replicas[C]!.dataDir,
      postgresUrl: db.url,
      keyringSecret: secret,
      tokenTtlMs: 300_000,
    });
    expect(kid).not.toBe(before);
    await waitFor(async () => (await Promise.all(replicas.map(kidOf))).every((k) => k === kid), 5000);
    // The old key stays published for tokens signed before the rotation.
    expect((await replicas[A]!.client.getPublicKey({})).keys.map((k) => k.keyId)).toEqual([kid, before]);
    // The agent refetches keys for an unknown kid at most once a second.
    await new Promise((resolve) => setTimeout(resolve, 1100));
    const second = await viaB.complete({ model: SCRIPTED_MODEL, prompt: 'hi again', maxTokens: 3 });
    expect(second.text).toMatch(/word0/);
  });
});

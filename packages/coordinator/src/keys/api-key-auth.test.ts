import { afterEach, describe, expect, it } from '@jest/globals';
import { createClientFactory, Metadata, Status } from 'nice-grpc';
import { AdminServiceDefinition, createProtoVersionClientMiddleware, type AdminServiceClient, type CreateApiKeyRequest } from '@titancompute/protocol';
import type { CoordinatorOptions } from '../config.js';
import { expectGrpcError } from '../test-support/expect-grpc-error.js';
import { startFakeAgent, type FakeAgent } from '../test-support/fake-agent.js';
import { startTestCoordinator, waitFor, type TestCoordinator } from '../test-support/test-coordinator.js';

let tc: TestCoordinator | undefined;
let agent: FakeAgent | undefined;
let admin: AdminServiceClient;

/**
 * A coordinator (each client may hold every slot) with one fake agent of 64 slots serving `tiny`
 * (after a restart on the same data dir, another agent id: the first one's is bound to its credential).
 */
async function start(options: Partial<CoordinatorOptions> = {}, agentId = 'agent-a'): Promise<TestCoordinator> {
  tc = await startTestCoordinator({ maxClientShare: 1, ...options });
  admin = createClientFactory().use(createProtoVersionClientMiddleware()).create(AdminServiceDefinition, tc.channel);
  agent ??= await startFakeAgent({ coordinatorAddress: tc.coordinator.address, joinToken: 'test-join-token', agentId, maxJobs: 64 });
  return tc;
}

afterEach(async () => {
  await agent?.close();
  agent = undefined;
  await tc?.stop(true);
  tc = undefined;
});

const createKey = async (request: Partial<CreateApiKeyRequest> & { name: string }) =>
  (await admin.createApiKey(request, { metadata: Metadata({ authorization: `Bearer ${tc!.coordinator.adminToken}` }) })).secret;
const listKeys = async () =>
  (await admin.listApiKeys({ includeInactive: true }, { metadata: Metadata({ authorization: `Bearer ${tc!.coordinator.adminToken}` }) })).keys;
const bearer = (secret: string) => ({ metadata: Metadata({ authorization: `Bearer ${secret}` }) });
const ask = (secret?: string, over: Record<string, unknown> = {}) =>
  tc!.client.requestInference({ clientId: 'as-given', model: 'tiny', prompt: 'hi', ...over }, secret ? bearer(secret) : {});

/** The gRPC call's trailers when it fails. */
async function trailersOf(secret: string, over: Record<string, unknown> = {}): Promise<Metadata> {
  let trailer: Metadata | undefined;
  await tc!.client.requestInference({ clientId: 'c', model: 'tiny', prompt: 'hi', ...over }, { ...bearer(secret), onTrailer: (t) => (trailer = t) }).then(
    () => {
      throw new Error('expected a refusal');
    },
    () => undefined,
  );
  return trailer!;
}

async function rest(authorization: string | undefined, body: Record<string, unknown> = {}) {
  const res = await fetch(`${tc!.httpUrl}/api/v1/inference/request`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...(authorization ? { authorization } : {}) },
    body: JSON.stringify({ model: 'tiny', prompt: 'hi', ...body }),
  });
  return { status: res.status, headers: res.headers, json: (await res.json()) as Record<string, unknown> };
}

/** The `client_id` claim of a session token. */
const clientIdOf = (token: string) => (JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString('utf8')) as { client_id: string }).client_id;

describe('auth modes', () => {
  it('auto: open until the first key exists, then keys are required (gRPC and REST), open again when the last is revoked', async () => {
    await start();
    expect(tc!.coordinator.authMode()).toBe('none');
    const open = await ask(undefined, { clientId: 'free-text' });
    expect(clientIdOf(open.sessionToken)).toBe('free-text');
    expect((await rest(undefined, { client_id: 'c' })).status).toBe(200);

    const secret = await createKey({ name: 'team-a' });
    expect(tc!.coordinator.authMode()).toBe('keys');
    await expectGrpcError(ask(), Status.UNAUTHENTICATED, /missing API key/);
    await expectGrpcError(ask('tk-notakey'), Status.UNAUTHENTICATED, /unknown API key tk-notakey/);
    expect(await rest(undefined, { client_id: 'c' })).toMatchObject({ status: 401, json: { error: 'missing_api_key', code: 401 } });
    expect(await rest('Bearer tk-nope', { client_id: 'c' })).toMatchObject({
      status: 401,
      json: { error: 'invalid_api_key', message: 'unknown API key tk-nope…' },
    });

    const granted = await ask(secret, { clientId: 'ignored' });
    expect(clientIdOf(granted.sessionToken)).toBe('team-a'); // client_id becomes the key's name
    const viaRest = await rest(`Bearer ${secret}`); // no client_id needed with a key
    expect(viaRest.status).toBe(200);
    expect(clientIdOf(viaRest.json.session_token as string)).toBe('team-a');

    await admin.revokeApiKey({ key: 'team-a' }, bearer(tc!.coordinator.adminToken));
    expect(tc!.coordinator.authMode()).toBe('none');
    expect(clientIdOf((await ask(secret, { clientId: 'again-free' })).sessionToken)).toBe('again-free');
  });

  it('--auth keys refuses everything while no key exists; --auth none ignores keys', async () => {
    await start({ auth: 'keys' });
    await expectGrpcError(ask(), Status.UNAUTHENTICATED, /missing API key/);
    await tc!.stop();
    const dataDir = tc!.dataDir;
    tc = undefined;
    await agent!.close();
    agent = undefined;
    await start({ dataDir, auth: 'none' }, 'agent-b');
    const secret = await createKey({ name: 'k', models: ['other'] });
    expect(tc!.coordinator.authMode()).toBe('none');
    expect(clientIdOf((await ask(secret, { clientId: 'mine' })).sessionToken)).toBe('mine'); // not even the allow-list applies
  });

  it('a revoked or expired key is UNAUTHENTICATED, naming it', async () => {
    await start({ auth: 'keys' });
    const short = await createKey({ name: 'short', expiresInSeconds: 1 });
    const gone = await createKey({ name: 'gone' });
    await admin.revokeApiKey({ key: 'gone' }, bearer(tc!.coordinator.adminToken));
    await expectGrpcError(ask(gone), Status.UNAUTHENTICATED, /API key "gone" \(tk-.{7}…\) was revoked at/);
    await ask(short);
    await new Promise((r) => setTimeout(r, 1050));
    await expectGrpcError(ask(short), Status.UNAUTHENTICATED, /API key "short" \(tk-.{7}…\) expired at/);
    expect(await rest(`Bearer ${short}`)).toMatchObject({ status: 401, json: { error: 'invalid_api_key', message: expect.stringContaining('"short"') } });
  });
});

describe('per-key limits', () => {
  it('model allow-list: PERMISSION_DENIED / 403 model_not_allowed', async () => {
    await start();
    const secret = await createKey({ name: 'only-other', models: ['other'] });
    await expectGrpcError(ask(secret), Status.PERMISSION_DENIED, /API key "only-other" may not use model "tiny" \(allowed: other\)/);
    expect(await rest(`Bearer ${secret}`)).toMatchObject({ status: 403, json: { error: 'model_not_allowed', code: 403 } });
  });

  it('an rpm-10 key sending 30 requests in a burst gets exactly 10; the rest are told the true wait', async () => {
    await start();
    const secret = await createKey({ name: 'burst', requestsPerMinute: 10 });
    const started = Date.now();
    const results = await Promise.allSettled(Array.from({ length: 30 }, () => ask(secret)));
    expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(10);
    const refused = results.filter((r) => r.status === 'rejected');
    expect(refused).toHaveLength(20);
    for (const r of refused)
      expect(String((r as PromiseRejectedResult).reason)).toMatch(/RESOURCE_EXHAUSTED.*API key "burst" exceeded its requests per minute limit of 10/);

    const trailer = await trailersOf(secret);
    const retryAfterMs = Number(trailer.get('retry-after-ms'));
    // The first grant leaves the window one minute after it was granted.
    expect(retryAfterMs).toBeLessThanOrEqual(60_000 - (Date.now() - started) + 50);
    expect(retryAfterMs).toBeGreaterThan(60_000 - (Date.now() - started) - 2000);
    expect(trailer.get('titan-quota')).toBe('rpm');
    expect(trailer.get('x-ratelimit-limit-requests')).toBe('10');
    expect(trailer.get('x-ratelimit-remaining-requests')).toBe('0');

    const res = await rest(`Bearer ${secret}`);
    expect(res).toMatchObject({ status: 429, json: { error: 'rate_limited', code: 429 } });
    expect(Number(res.headers.get('retry-after'))).toBe(Math.ceil(Number(res.headers.get('retry-after-ms')) / 1000));
    expect(Number(res.headers.get('retry-after'))).toBeGreaterThanOrEqual(58);
    expect(res.headers.get('x-ratelimit-remaining-requests')).toBe('0');
    expect((await listKeys())[0]).toMatchObject({ requestsTotal: 10 });
  });

  it('success answers carry the x-ratelimit-* values of the limits the key has (REST headers, gRPC response headers)', async () => {
    await start();
    const secret = await createKey({ name: 'limited', requestsPerMinute: 5, tokensPerMinute: 1000 });
    const res = await rest(`Bearer ${secret}`);
    expect(res.status).toBe(200);
    expect(res.headers.get('x-ratelimit-limit-requests')).toBe('5');
    expect(res.headers.get('x-ratelimit-remaining-requests')).toBe('4');
    expect(res.headers.get('x-ratelimit-reset-requests')).toMatch(/^(59\.\d+s|1m0s)$/);
    expect(res.headers.get('x-ratelimit-limit-tokens')).toBe('1000');
    expect(res.headers.get('x-ratelimit-remaining-tokens')).toBe('1000');
    let header: Metadata | undefined;
    await tc!.client.requestInference({ clientId: 'c', model: 'tiny', prompt: 'hi' }, { ...bearer(secret), onHeader: (h) => (header = h) });
    expect(header?.get('x-ratelimit-remaining-requests')).toBe('3');
    const plain = await createKey({ name: 'unlimited' });
    const unlimited = await rest(`Bearer ${plain}`);
    expect(unlimited.status).toBe(200);
    expect([...unlimited.headers.keys()].filter((h) => h.startsWith('x-ratelimit'))).toEqual([]);
  });

  it('tpm: the key is charged the tokens its agent reports (prompt + generated), not max_tokens', async () => {
    await start();
    const secret = await createKey({ name: 'tokens', tokensPerMinute: 100 });
    const first = await ask(secret, { maxTokens: 4000 });
    await ask(secret, { maxTokens: 4000 }); // nothing charged yet: max_tokens does not count
    agent!.startJob(first.jobId);
    await agent!.send();
    agent!.finishJob(first.jobId, { promptTokens: 30, tokensGenerated: 80 });
    await agent!.send();
    await waitFor(async () => (await listKeys())[0]?.tokensUsed === 110);
    const err = await expectGrpcError(ask(secret), Status.RESOURCE_EXHAUSTED, /API key "tokens" exceeded its tokens per minute limit of 100 \(used 110\)/);
    expect(Number(err.details.match(/retry after (\d+) ms/)?.[1])).toBeGreaterThan(58_000);
    const trailer = await trailersOf(secret);
    expect(trailer.get('titan-quota')).toBe('tpm');
    expect(trailer.get('x-ratelimit-remaining-tokens')).toBe('0');
  });

  it('budget: charged usage persists across a restart; exhausted is 429 budget_exhausted without Retry-After', async () => {
    await start();
    const secret = await createKey({ name: 'budget', budgetTokens: 50 });
    const grant = await ask(secret);
    agent!.finishJob(grant.jobId, { promptTokens: 20, tokensGenerated: 40 });
    await agent!.send();
    await waitFor(async () => (await listKeys())[0]?.tokensUsed === 60);
    const dataDir = tc!.dataDir;
    await tc!.stop();
    tc = undefined;
    await agent!.close();
    agent = undefined;
    await start({ dataDir }, 'agent-b');
    expect((await listKeys())[0]).toMatchObject({ name: 'budget', tokensUsed: 60, requestsTotal: 1 });
    await expectGrpcError(ask(secret), Status.RESOURCE_EXHAUSTED, /token budget limit of 50 \(used 60\); it does not refill/);
    const trailer = await trailersOf(secret);
    expect(trailer.get('titan-quota')).toBe('budget');
    expect(trailer.get('retry-after-ms')).toBeUndefined();
    const res = await rest(`Bearer ${secret}`);
    expect(res).toMatchObject({ status: 429, json: { error: 'budget_exhausted' } });
    expect(res.headers.get('retry-after')).toBeNull();
  });

  it('max concurrent: reservations and running jobs of the key count; a finished job frees a place', async () => {
    await start({ claimWindowMs: 5000 });
    const secret = await createKey({ name: 'two', maxConcurrent: 2 });
    const a = await ask(secret);
    const claimedAt = Date.now();
    await ask(secret);
    agent!.startJob(a.jobId);
    await agent!.send();
    const err = await expectGrpcError(ask(secret), Status.RESOURCE_EXHAUSTED, /API key "two" exceeded its concurrent jobs limit of 2 \(used 2\)/);
    // A job is running (it may end any moment): the short hint, not the claim window.
    expect(Number(err.details.match(/retry after (\d+) ms/)?.[1])).toBe(250);
    agent!.finishJob(a.jobId);
    await agent!.send();
    await ask(secret);
    // Only reservations now: the hint is the end of the earliest claim window.
    const trailer = await trailersOf(secret);
    expect(trailer.get('titan-quota')).toBe('concurrency');
    const retry = Number(trailer.get('retry-after-ms'));
    expect(retry).toBeLessThanOrEqual(5000 - (Date.now() - claimedAt) + 100);
    expect(retry).toBeGreaterThan(1000);
  });
});

import { randomUUID } from 'node:crypto';
import { afterEach, beforeEach, describe, expect, it } from '@jest/globals';
import { createLogger } from '@titancompute/server-kit';
import { ApiKeyAuthError, QuotaExceededError } from '../errors.js';
import { openPostgresStore, type PostgresStore } from '../store/postgres-store.js';
import { waitFor } from '../test-support/test-coordinator.js';
import { createTestDatabase, postgresAvailable, type TestDatabase } from '@titancompute/test-support/postgres';
import { createApiKeys, type ApiKeys, type AuthSetting, type KeyAdmission } from './api-keys.js';
import { openPostgresApiKeyStore } from './postgres-api-key-store.js';

const pgUp = await postgresAvailable('coordinator PostgreSQL API keys');

const logger = createLogger({ service: 'test', level: 'silent' });
let db: TestDatabase;
let stores: PostgresStore[] = [];
let replicas: ApiKeys[] = [];
let clock: number;

/** Three coordinators' API keys on one database, one clock, no periodic re-read (only NOTIFY). */
async function openReplicas(auth: AuthSetting = 'keys', n = 3): Promise<ApiKeys[]> {
  for (let i = 0; i < n; i++) {
    const store = await openPostgresStore({ url: db.url, logger });
    stores.push(store);
    const keys = createApiKeys({ store: openPostgresApiKeyStore({ store }), auth, logger, now: () => clock, refreshIntervalMs: 3_600_000 });
    await keys.start();
    replicas.push(keys);
  }
  return replicas;
}

/** One inference request as the router makes it: authenticate, then admit and commit in the same turn. */
async function request(keys: ApiKeys, secret: string, model = 'tiny'): Promise<KeyAdmission> {
  const key = await keys.authenticate(`Bearer ${secret}`);
  const admission = keys.admit(key!, { model, held: 0, concurrencyRetryAfterMs: () => 250 });
  admission.commit(randomUUID(), clock + 300_000);
  return admission;
}

/** How many request grants of the key the database holds in its window. */
const grantsInDb = async () => Number((await db.query('SELECT count(*) AS n FROM api_key_grants')).rows[0].n);

const describePg = pgUp ? describe : () => undefined;

describePg('API keys on PostgreSQL, shared by replicas', () => {
  beforeEach(async () => {
    db = await createTestDatabase();
    clock = 1_700_000_000_000;
  });
  afterEach(async () => {
    for (const k of replicas) await k.stop();
    for (const s of stores) await s.close();
    replicas = [];
    stores = [];
    await db.drop();
  });

  it('a key created through one replica works on the others; revoked through another, every replica refuses it at once', async () => {
    const [a, b, c] = await openReplicas();
    const { secret, key } = await a!.create({ name: 'ci' });
    expect((await b!.authenticate(`Bearer ${secret}`))?.id).toBe(key.id);
    expect((await c!.authenticate(`Bearer ${secret}`))?.id).toBe(key.id);
    await b!.revoke('ci');
    // No waiting: every lookup reads the database.
    await expect(a!.authenticate(`Bearer ${secret}`)).rejects.toThrow(ApiKeyAuthError);
    await expect(c!.authenticate(`Bearer ${secret}`)).rejects.toThrow(/was revoked/);
    expect((await c!.list({ includeInactive: true })).map((k) => k.revokedAtMs !== undefined)).toEqual([true]);
  });

  it('a name is unique among active keys across replicas (two creations racing: one wins)', async () => {
    const [a, b] = await openReplicas('keys', 2);
    const results = await Promise.allSettled([a!.create({ name: 'same' }), b!.create({ name: 'same' })]);
    expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
    expect((await a!.list()).map((k) => k.name)).toEqual(['same']);
  });

  it('requests per minute hold for the cluster: 100 concurrent requests over three replicas get exactly 30 of an rpm-30 key; Retry-After is true', async () => {
    const all = await openReplicas();
    const { secret } = await all[0]!.create({ name: 'rpm', requestsPerMinute: 30 });
    const t0 = clock;
    const outcomes = await Promise.allSettled(Array.from({ length: 100 }, (_, i) => request(all[i % 3]!, secret)));
    const granted = outcomes.filter((o) => o.status === 'fulfilled');
    const refused = outcomes.flatMap((o) => (o.status === 'rejected' ? [o.reason as unknown] : []));
    expect(granted.length).toBe(30);
    expect(refused.length).toBe(70);
    for (const err of refused) {
      expect(err).toBeInstanceOf(QuotaExceededError);
      expect(err).toMatchObject({ quota: 'rpm', usage: { limit: 30, used: 30 }, retryAfterMs: 60_000 });
    }
    // Refused requests were given back: the database holds the 30 grants only.
    await waitFor(async () => (await grantsInDb()) === 30);
    // Half a minute later the window is still full, and says when it frees.
    clock = t0 + 30_000;
    await expect(request(all[1]!, secret)).rejects.toMatchObject({ quota: 'rpm', retryAfterMs: 30_000 });
    // Once the minute has passed, 30 more (and no more) across the replicas.
    clock = t0 + 60_000;
    const next = await Promise.allSettled(Array.from({ length: 40 }, (_, i) => request(all[(i + 1) % 3]!, secret)));
    expect(next.filter((o) => o.status === 'fulfilled')).toHaveLength(30);
  });

  it('a grant refused after admission (agents busy) or reverted is given back to the cluster', async () => {
    const [a, b] = await openReplicas('keys', 2);
    const { secret } = await a!.create({ name: 'one', requestsPerMinute: 1 });
    // Authenticated and admitted, never committed: the router found every agent busy and reverts it.
    const key = await a!.authenticate(`Bearer ${secret}`);
    const admission = a!.admit(key!, { model: 'tiny', held: 0, concurrencyRetryAfterMs: () => 250 });
    expect(admission.rateLimitHeaders()['x-ratelimit-remaining-requests']).toBe('1');
    // An admitted grant is its admission's (the shared reservation is awaited between admit and commit).
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(await grantsInDb()).toBe(1);
    admission.revert();
    await waitFor(async () => (await grantsInDb()) === 0);
    const granted = await request(b!, secret);
    expect(granted.rateLimitHeaders()).toMatchObject({
      'x-ratelimit-limit-requests': '1',
      'x-ratelimit-remaining-requests': '0',
      'x-ratelimit-reset-requests': '1m0s',
    });
    await expect(request(a!, secret)).rejects.toThrow(QuotaExceededError);
    // The token could not be signed: revert gives the grant back.
    granted.revert();
    await waitFor(async () => (await grantsInDb()) === 0);
    await request(a!, secret);
  });

  it('tokens per minute and the budget count what any replica charged', async () => {
    const [a, b] = await openReplicas('keys', 2);
    const tpm = await a!.create({ name: 'tpm', tokensPerMinute: 100 });
    const budget = await a!.create({ name: 'budget', budgetTokens: 50 });
    const t0 = clock;
    const jobOf = async (keys: ApiKeys, secret: string) => {
      const key = await keys.authenticate(`Bearer ${secret}`);
      const jobId = randomUUID();
      keys.admit(key!, { model: 'tiny', held: 0, concurrencyRetryAfterMs: () => 250 }).commit(jobId, clock + 300_000);
      return jobId;
    };
    a!.charge({ jobId: await jobOf(a!, tpm.secret), promptTokens: 60, tokensGenerated: 50 });
    a!.charge({ jobId: await jobOf(a!, budget.secret), promptTokens: 30, tokensGenerated: 30 });
    await waitFor(async () => Number((await db.query('SELECT COALESCE(sum(tokens), 0) AS n FROM api_key_charges')).rows[0].n) === 170);
    clock = t0 + 10_000;
    await expect(request(b!, tpm.secret)).rejects.toMatchObject({ quota: 'tpm', usage: { limit: 100, used: 110 }, retryAfterMs: 50_000 });
    await expect(request(b!, budget.secret)).rejects.toMatchObject({ quota: 'budget', usage: { limit: 50, used: 60 }, retryAfterMs: undefined });
    clock = t0 + 60_000;
    await request(b!, tpm.secret);
  });

  it('under --auth auto, a key created on one replica turns keys on at the others at once (NOTIFY, no periodic re-read)', async () => {
    const [a, b] = await openReplicas('auto', 2);
    expect(b!.mode()).toBe('none');
    const { secret } = await a!.create({ name: 'first' });
    await waitFor(() => b!.mode() === 'keys', 5000);
    await expect(b!.authenticate(undefined)).rejects.toThrow(/missing API key/);
    expect(await b!.authenticate(`Bearer ${secret}`)).toBeDefined();
  });
});

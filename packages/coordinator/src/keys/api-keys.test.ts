import { afterEach, beforeEach, describe, expect, it } from '@jest/globals';
import { readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from '@titancompute/server-kit';
import Database from 'better-sqlite3';
import {
  ApiKeyAuthError,
  ApiKeyExistsError,
  ApiKeyNotFoundError,
  ApiKeyStoreError,
  InvalidRequestError,
  ModelNotAllowedError,
  QuotaExceededError,
} from '../errors.js';
import { makeTempDir } from '../test-support/test-coordinator.js';
import { hashApiKeySecret } from './api-key.js';
import { createApiKeys, type ApiKeys, type AuthSetting } from './api-keys.js';
import { openSqliteApiKeyStore } from './sqlite-api-key-store.js';

/** A logger that keeps its info messages. */
function recordingLogger(): { logger: Logger; messages: string[] } {
  const messages: string[] = [];
  const logger = {
    info: (_obj: unknown, msg: string) => void messages.push(msg),
    warn: () => undefined,
    error: () => undefined,
    debug: () => undefined,
  } as unknown as Logger;
  return { logger, messages };
}

let dir: string;
let clock: number;
let keys: ApiKeys;
let messages: string[];

async function open(auth: AuthSetting = 'auto'): Promise<ApiKeys> {
  const recorded = recordingLogger();
  messages = recorded.messages;
  const k = createApiKeys({ store: openSqliteApiKeyStore({ dataDir: dir }), auth, logger: recorded.logger, now: () => clock, refreshIntervalMs: 3_600_000 });
  await k.start();
  return k;
}

const admitOne = (k: ApiKeys, key: Awaited<ReturnType<ApiKeys['authenticate']>>, over: { model?: string; held?: number } = {}) =>
  k.admit(key!, { model: over.model ?? 'tiny', held: over.held ?? 0, concurrencyRetryAfterMs: () => 250 });

beforeEach(async () => {
  dir = makeTempDir();
  clock = 1_700_000_000_000;
  keys = await open();
});
afterEach(async () => {
  await keys.stop();
  rmSync(dir, { recursive: true, force: true });
});

describe('API key store (SQLite, coordinator.db)', () => {
  it('keeps only the hash of a secret: the secret is nowhere on disk, its SHA-256 is', async () => {
    const { secret, key } = await keys.create({ name: 'ci', requestsPerMinute: 5 });
    expect(secret).toMatch(/^tk-[A-Za-z0-9_-]{43}$/);
    expect(key).toMatchObject({ name: 'ci', prefix: secret.slice(0, 10), requestsPerMinute: 5, tokensUsed: 0, requestsTotal: 0 });
    expect(key.id).toMatch(/^key-[0-9a-f]{12}$/);
    await keys.stop();
    const files = readdirSync(dir).filter((f) => f.startsWith('coordinator.db'));
    expect(files).toContain('coordinator.db');
    const bytes = Buffer.concat(files.map((f) => readFileSync(join(dir, f))));
    expect(bytes.includes(Buffer.from(secret))).toBe(false);
    expect(bytes.includes(Buffer.from(secret.slice(10)))).toBe(false);
    expect(bytes.includes(hashApiKeySecret(secret))).toBe(true);
    expect(statSync(join(dir, 'coordinator.db')).mode & 0o777).toBe(0o600);
    keys = await open();
  });

  it('names are unique among active keys; revoke by id or name; usage and revocations persist', async () => {
    const first = await keys.create({ name: 'team-a', budgetTokens: 1000 });
    await expect(keys.create({ name: 'team-a' })).rejects.toBeInstanceOf(ApiKeyExistsError);
    const key = await keys.authenticate(`Bearer ${first.secret}`);
    admitOne(keys, key).commit('job-1', clock + 300_000);
    keys.charge({ jobId: 'job-1', promptTokens: 7, tokensGenerated: 30 });
    keys.charge({ jobId: 'job-1', promptTokens: 7, tokensGenerated: 30 }); // once per job
    keys.charge({ jobId: 'other', promptTokens: 7, tokensGenerated: 30 }); // not granted with a key
    await keys.stop();
    keys = await open();
    const [listed] = await keys.list();
    expect(listed).toMatchObject({ name: 'team-a', tokensUsed: 37, requestsTotal: 1, lastUsedAtMs: clock });
    const revoked = await keys.revoke('team-a');
    expect(revoked.revokedAtMs).toBe(clock);
    await expect(keys.revoke('nope')).rejects.toBeInstanceOf(ApiKeyNotFoundError);
    await expect(keys.revoke('')).rejects.toBeInstanceOf(InvalidRequestError);
    clock += 1; // listed oldest first
    const second = await keys.create({ name: 'team-a' }); // the name is free again
    expect((await keys.list()).map((k) => k.id)).toEqual([second.key.id]);
    expect((await keys.list({ includeInactive: true })).map((k) => k.id)).toEqual([first.key.id, second.key.id]);
    expect((await keys.revoke(first.key.id)).revokedAtMs).toBe(clock - 1); // already revoked: unchanged
  });

  it('validates new keys, naming the field as on the wire', async () => {
    const fails = async (input: Parameters<ApiKeys['create']>[0], field: string) => {
      const err = await keys.create(input).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(InvalidRequestError);
      expect((err as InvalidRequestError).field).toBe(field);
    };
    await fails({ name: '' }, 'name');
    await fails({ name: 'has space' }, 'name');
    await fails({ name: 'key-0123456789ab' }, 'name');
    await fails({ name: 'x', requestsPerMinute: -1 }, 'requests_per_minute');
    await fails({ name: 'x', tokensPerMinute: 1.5 }, 'tokens_per_minute');
    await fails({ name: 'x', models: ['ok', ''] }, 'models[1]');
    await fails({ name: 'x', expiresInSeconds: 10 ** 12 }, 'expires_in_seconds');
    expect((await keys.create({ name: 'x', models: ['a', 'a', 'b'] })).key.models).toEqual(['a', 'b']);
  });

  it('refuses a database written by a newer coordinator', async () => {
    await keys.stop();
    const db = new Database(join(dir, 'coordinator.db'));
    db.prepare("UPDATE schema_versions SET version = 99 WHERE schema = 'api_keys'").run();
    db.close();
    expect(() => openSqliteApiKeyStore({ dataDir: dir })).toThrow(ApiKeyStoreError);
    expect(() => openSqliteApiKeyStore({ dataDir: dir })).toThrow(/version 99, newer than this coordinator's 1/);
    const again = new Database(join(dir, 'coordinator.db'));
    again.prepare("UPDATE schema_versions SET version = 1 WHERE schema = 'api_keys'").run();
    again.close();
    keys = await open();
  });
});

describe('auth modes', () => {
  it('auto: none without keys, keys from the first key on (logged), none again when the last one is revoked or expires', async () => {
    expect(keys.mode()).toBe('none');
    expect(messages).toContain('auth mode none: credentials are ignored');
    expect(await keys.authenticate('Bearer whatever')).toBeUndefined();
    const { secret } = await keys.create({ name: 'a' });
    expect(keys.mode()).toBe('keys');
    expect(messages).toContain('auth mode changed to keys: inference requests need an API key');
    await expect(keys.authenticate(undefined)).rejects.toMatchObject({ reason: 'missing', restErrorCode: 'missing_api_key' });
    expect((await keys.authenticate(`Bearer ${secret}`))?.name).toBe('a');
    await keys.revoke('a');
    expect(keys.mode()).toBe('none');
    expect(messages).toContain('auth mode changed to none: no active API key, credentials are ignored');
    await keys.create({ name: 'b', expiresInSeconds: 60 });
    expect(keys.mode()).toBe('keys');
    clock += 60_000;
    expect(keys.mode()).toBe('none');
  });

  it('none ignores credentials even with keys; keys requires one even without any', async () => {
    await keys.create({ name: 'a' });
    await keys.stop();
    keys = await open('none');
    expect(keys.mode()).toBe('none');
    expect(await keys.authenticate(undefined)).toBeUndefined();
    await keys.stop();
    rmSync(dir, { recursive: true, force: true });
    dir = makeTempDir();
    keys = await open('keys');
    expect(keys.mode()).toBe('keys');
    await expect(keys.authenticate('Bearer tk-nothing')).rejects.toBeInstanceOf(ApiKeyAuthError);
  });

  it('refuses malformed, unknown, revoked and expired keys, naming the key', async () => {
    const a = await keys.create({ name: 'alpha' });
    const b = await keys.create({ name: 'beta', expiresInSeconds: 10 });
    const refusal = (auth: string | undefined) => keys.authenticate(auth).catch((e: unknown) => e as ApiKeyAuthError);
    expect(await refusal('Basic abc')).toMatchObject({ reason: 'malformed', message: expect.stringContaining('Bearer tk-') });
    expect(await refusal('Bearer sk-abc')).toMatchObject({ reason: 'malformed' });
    expect(await refusal('Bearer tk-AAAAAAAAAAAAAAAA')).toMatchObject({
      reason: 'unknown',
      message: 'unknown API key tk-AAAAAAA…',
      restErrorCode: 'invalid_api_key',
    });
    await keys.revoke('alpha');
    expect(await refusal(`Bearer ${a.secret}`)).toMatchObject({
      reason: 'revoked',
      keyName: 'alpha',
      message: expect.stringMatching(/^API key "alpha" \(tk-.{7}…\) was revoked at 20/),
    });
    clock += 10_000;
    await keys.create({ name: 'gamma' }); // keeps the mode at keys
    expect(await refusal(`Bearer ${b.secret}`)).toMatchObject({ reason: 'expired', keyName: 'beta', message: expect.stringMatching(/expired at 20/) });
  });
});

describe('quotas', () => {
  it('models allow-list: PERMISSION_DENIED naming the key, the model and what is allowed', async () => {
    const { secret } = await keys.create({ name: 'm', models: ['tiny', 'small'] });
    const key = await keys.authenticate(`Bearer ${secret}`);
    expect(() => admitOne(keys, key, { model: 'big' })).toThrow(ModelNotAllowedError);
    expect(() => admitOne(keys, key, { model: 'big' })).toThrow('API key "m" may not use model "big" (allowed: tiny, small)');
    expect(admitOne(keys, key, { model: 'small' }).key.name).toBe('m');
  });

  it('rpm: exactly N grants per sliding minute; Retry-After is the time until the oldest leaves', async () => {
    const { secret } = await keys.create({ name: 'r', requestsPerMinute: 3 });
    const key = await keys.authenticate(`Bearer ${secret}`);
    const start = clock;
    for (let i = 0; i < 3; i++) {
      admitOne(keys, key).commit(`j${i}`, clock + 300_000);
      clock += 10_000;
    }
    const err = (() => {
      try {
        admitOne(keys, key);
      } catch (e) {
        return e as QuotaExceededError;
      }
    })();
    expect(err).toBeInstanceOf(QuotaExceededError);
    expect(err).toMatchObject({ quota: 'rpm', retryAfterMs: start + 60_000 - clock, restErrorCode: 'rate_limited' });
    expect(err?.message).toBe(`API key "r" exceeded its requests per minute limit of 3 (used 3); retry after ${start + 60_000 - clock} ms`);
    expect(err?.grpcTrailers).toEqual({
      'titan-quota': 'rpm',
      'retry-after-ms': '30000',
      'x-ratelimit-limit-requests': '3',
      'x-ratelimit-remaining-requests': '0',
      'x-ratelimit-reset-requests': '50s',
    });
    clock = start + 60_000; // the first grant leaves the window
    const admission = admitOne(keys, key);
    admission.commit('j3', clock + 300_000);
    expect(admission.rateLimitHeaders()).toEqual({
      'x-ratelimit-limit-requests': '3',
      'x-ratelimit-remaining-requests': '0',
      'x-ratelimit-reset-requests': '1m0s',
    });
  });

  it('a grant taken back (token not signed) does not count', async () => {
    const { secret } = await keys.create({ name: 'r1', requestsPerMinute: 1 });
    const key = await keys.authenticate(`Bearer ${secret}`);
    const admission = admitOne(keys, key);
    admission.commit('j', clock + 1000);
    admission.revert();
    expect(() => admitOne(keys, key)).not.toThrow();
  });

  it('tpm: charged from reported tokens (prompt + generated), refused while the window holds the limit', async () => {
    const { secret } = await keys.create({ name: 't', tokensPerMinute: 100 });
    const key = await keys.authenticate(`Bearer ${secret}`);
    const first = admitOne(keys, key);
    first.commit('a', clock + 300_000);
    expect(first.rateLimitHeaders()).toEqual({ 'x-ratelimit-limit-tokens': '100', 'x-ratelimit-remaining-tokens': '100', 'x-ratelimit-reset-tokens': '0ms' });
    admitOne(keys, key).commit('b', clock + 300_000); // max_tokens is not charged: both pass
    const charged = clock;
    keys.charge({ jobId: 'a', promptTokens: 20, tokensGenerated: 50 });
    clock += 5000;
    keys.charge({ jobId: 'b', promptTokens: -5, tokensGenerated: 40 }); // negative counts are not credited
    clock += 1000;
    const err = (() => {
      try {
        admitOne(keys, key);
      } catch (e) {
        return e as QuotaExceededError;
      }
    })();
    expect(err).toMatchObject({ quota: 'tpm', usage: { limit: 100, used: 110 }, retryAfterMs: charged + 60_000 - clock });
    clock = charged + 60_000;
    expect(admitOne(keys, key).rateLimitHeaders()['x-ratelimit-remaining-tokens']).toBe('60');
  });

  it('budget: lifetime tokens, no retry, a distinct code', async () => {
    const { secret } = await keys.create({ name: 'b', budgetTokens: 50 });
    let key = await keys.authenticate(`Bearer ${secret}`);
    admitOne(keys, key).commit('x', clock + 1000);
    keys.charge({ jobId: 'x', promptTokens: 10, tokensGenerated: 40 });
    key = await keys.authenticate(`Bearer ${secret}`);
    const err = (() => {
      try {
        admitOne(keys, key);
      } catch (e) {
        return e as QuotaExceededError;
      }
    })();
    expect(err).toMatchObject({ quota: 'budget', retryAfterMs: undefined, restErrorCode: 'budget_exhausted' });
    expect(err?.message).toBe('API key "b" exceeded its token budget limit of 50 (used 50); it does not refill; ask for a new key');
    expect(err?.grpcTrailers).toEqual({ 'titan-quota': 'budget' });
  });

  it('max concurrent: counts what the client holds; the retry hint comes from the registry', async () => {
    const { secret } = await keys.create({ name: 'c', maxConcurrent: 2 });
    const key = await keys.authenticate(`Bearer ${secret}`);
    expect(() => admitOne(keys, key, { held: 1 })).not.toThrow();
    expect(() => keys.admit(key!, { model: 'tiny', held: 2, concurrencyRetryAfterMs: () => 1234 })).toThrow(
      'API key "c" exceeded its concurrent jobs limit of 2 (used 2); retry after 1234 ms',
    );
  });
});

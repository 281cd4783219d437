import { describe, expect, it } from '@jest/globals';
import type { ApiKeyRecord } from '../keys/api-key.js';
import { createKeyUsageTracker } from './key-usage.js';

const key = (over: Partial<ApiKeyRecord>): ApiKeyRecord => ({
  id: 'key-000000000001',
  name: 'ci',
  prefix: 'tk-abcdefg',
  requestsPerMinute: 60,
  tokensPerMinute: 1000,
  maxConcurrent: 2,
  budgetTokens: 10_000,
  models: [],
  createdAtMs: 0,
  expiresAtMs: undefined,
  revokedAtMs: undefined,
  tokensUsed: 0,
  requestsTotal: 0,
  lastUsedAtMs: undefined,
  ...over,
});

describe('key usage', () => {
  it('reports totals, the last minute from sampled totals, and concurrency from the registry', async () => {
    let t = 0;
    let current = key({});
    const usage = createKeyUsageTracker({ list: async () => [current], held: (name) => (name === 'ci' ? 1 : 0), now: () => t });
    expect((await usage.sample())[0]).toMatchObject({
      name: 'ci',
      requestsLastMinute: 0,
      tokensLastMinute: 0,
      concurrent: 1,
      state: 'active',
      lastUsedAtMs: null,
    });
    t = 20_000;
    current = key({ requestsTotal: 3, tokensUsed: 300, lastUsedAtMs: 19_000 });
    expect((await usage.sample())[0]).toMatchObject({ requestsTotal: 3, tokensUsed: 300, requestsLastMinute: 3, tokensLastMinute: 300, lastUsedAtMs: 19_000 });
    t = 70_000;
    current = key({ requestsTotal: 5, tokensUsed: 500 });
    // The baseline is the newest sample at least a minute old: the one at 0 s.
    expect((await usage.sample())[0]).toMatchObject({ requestsLastMinute: 5, tokensLastMinute: 500 });
    t = 81_000;
    expect((await usage.sample())[0]).toMatchObject({ requestsLastMinute: 2, tokensLastMinute: 200 });
    t = 200_000;
    expect((await usage.sample())[0]).toMatchObject({ requestsLastMinute: 0, tokensLastMinute: 0 });
  });
});

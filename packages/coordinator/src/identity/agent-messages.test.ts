import { describe, expect, it } from '@jest/globals';
import fc from 'fast-check';
import { AgentRegistration, HealthUpdate, MAX_REPORTED_PREFIX_BLOCKS, prefixBlockHashes, type PrefixCacheReport } from '@titancompute/protocol';
import { InvalidRequestError } from '../errors.js';
import { healthUpdatePasses, validateHealthUpdate, validateHealthUpdateBySchema, validateRegistration } from './agent-messages.js';

const registration = (over: Partial<AgentRegistration>) =>
  AgentRegistration.fromPartial({
    agentId: 'gpu-1',
    endpoint: '10.0.0.5:50052',
    maxJobs: 4,
    supportedModels: ['tiny'],
    agentCredential: 'c'.repeat(43),
    ...over,
  });

describe('RegisterAgent validation of http_endpoint', () => {
  it('takes none, or another port of the agent’s own host', () => {
    expect(() => validateRegistration(registration({ httpEndpoint: '' }))).not.toThrow();
    expect(() => validateRegistration(registration({ httpEndpoint: '10.0.0.5:50062' }))).not.toThrow();
    expect(() => validateRegistration(registration({ endpoint: '[::1]:50052', httpEndpoint: '[::1]:50062' }))).not.toThrow();
  });

  it('refuses an address on another host: the coordinator relays OpenAI requests there', () => {
    for (const httpEndpoint of ['10.0.0.6:50062', 'metadata.internal:80', '127.0.0.1:8080']) {
      const err = (() => {
        try {
          validateRegistration(registration({ httpEndpoint }));
        } catch (e) {
          return e;
        }
        return undefined;
      })();
      expect(err).toBeInstanceOf(InvalidRequestError);
      expect((err as InvalidRequestError).field).toBe('http_endpoint');
      expect((err as Error).message).toContain('same host as endpoint');
    }
  });

  it('refuses a malformed address', () => {
    expect(() => validateRegistration(registration({ httpEndpoint: 'not an endpoint' }))).toThrow(/http_endpoint/);
  });
});

describe('HealthUpdate validation of prefix_cache', () => {
  const report = (over: Partial<PrefixCacheReport>): PrefixCacheReport => ({
    blockHashes: prefixBlockHashes('p'.repeat(256 * 3)),
    usedCells: 700,
    totalCells: 8192,
    usedSequences: 1,
    totalSequences: 4,
    ...over,
  });
  const update = (prefixCache: PrefixCacheReport | undefined) => HealthUpdate.fromPartial({ agentId: 'gpu-1', ...(prefixCache ? { prefixCache } : {}) });
  /** The InvalidRequestError validation throws: its field and message. */
  const refusal = (prefixCache: PrefixCacheReport) => {
    try {
      validateHealthUpdate(update(prefixCache));
    } catch (e) {
      expect(e).toBeInstanceOf(InvalidRequestError);
      return { field: (e as InvalidRequestError).field, message: (e as Error).message };
    }
    throw new Error('accepted');
  };

  it('takes an update without a report, and a bounded report of well-formed hashes', () => {
    expect(() => validateHealthUpdate(update(undefined))).not.toThrow();
    expect(() => validateHealthUpdate(update(report({})))).not.toThrow();
    const many = prefixBlockHashes('q'.repeat(256 * 64)).concat(
      prefixBlockHashes('r'.repeat(256 * 64)),
      prefixBlockHashes('s'.repeat(256 * 64)),
      prefixBlockHashes('t'.repeat(256 * 64)),
    );
    expect(many).toHaveLength(MAX_REPORTED_PREFIX_BLOCKS);
    expect(() => validateHealthUpdate(update(report({ blockHashes: many })))).not.toThrow();
  });

  it('refuses more hashes than the bound, naming the field', () => {
    const tooMany = Array.from({ length: MAX_REPORTED_PREFIX_BLOCKS + 1 }, (_, i) => i.toString(16).padStart(16, '0'));
    expect(refusal(report({ blockHashes: tooMany }))).toEqual({ field: 'prefix_cache.block_hashes', message: expect.stringContaining('at most 256') });
  });

  it('refuses a hash that is not 16 lowercase hex digits, naming the entry', () => {
    for (const bad of ['ABCDEF0123456789', 'abc', '0123456789abcdef0', 'zzzzzzzzzzzzzzzz']) {
      const hashes = prefixBlockHashes('p'.repeat(256 * 2));
      expect(refusal(report({ blockHashes: [...hashes, bad] }))).toEqual({ field: 'prefix_cache.block_hashes[2]', message: expect.stringContaining('hex') });
    }
  });

  it('refuses negative or inconsistent usage, naming the field', () => {
    expect(refusal(report({ usedCells: -1 })).field).toBe('prefix_cache.used_cells');
    expect(refusal(report({ usedCells: 9000 }))).toEqual({ field: 'prefix_cache.used_cells', message: expect.stringContaining('total_cells') });
    expect(refusal(report({ totalSequences: 1.5 })).field).toBe('prefix_cache.total_sequences');
    expect(refusal(report({ usedSequences: 5 })).field).toBe('prefix_cache.used_sequences');
  });
});

describe('the health update fast path', () => {
  const accepted = (u: HealthUpdate) => {
    try {
      validateHealthUpdateBySchema(u);
      return true;
    } catch (err) {
      expect(err).toBeInstanceOf(InvalidRequestError);
      return false;
    }
  };
  // Mostly values in range (so that whole updates are often valid), sometimes one at or around
  // a bound the schema draws, or no proper number at all.
  const edgy = (bound: number) =>
    fc.oneof(
      { weight: 30, arbitrary: fc.oneof(fc.integer({ min: 0, max: Math.min(bound, 2 ** 31) }), fc.constantFrom(0, bound)) },
      {
        weight: 1,
        arbitrary: fc.oneof(
          fc.constantFrom(bound + 1, bound - 0.5, -1, -0.5, Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY, 2 ** 53),
          fc.double({ min: -10, max: bound + 10 }),
        ),
      },
    );
  const str = (max: number) =>
    fc.oneof(
      { weight: 30, arbitrary: fc.string({ minLength: 1, maxLength: 3 }) },
      { weight: 1, arbitrary: fc.constantFrom('', 'x'.repeat(max), 'x'.repeat(max + 1)) },
    );
  const jobIds = fc.array(str(128), { maxLength: 3 });
  const gpu = fc.record(
    {
      index: edgy(1023),
      uuid: str(128),
      name: str(256),
      memoryTotalMb: edgy(2 ** 50),
      memoryUsedMb: edgy(2 ** 50),
      memoryFreeMb: edgy(2 ** 50),
      utilizationPercent: fc.option(edgy(100), { nil: undefined }),
      temperatureC: fc.option(fc.oneof({ weight: 30, arbitrary: edgy(1000) }, { weight: 1, arbitrary: fc.constantFrom(-273, -274) }), { nil: undefined }),
      powerDrawW: fc.option(edgy(1_000_000), { nil: undefined }),
    },
    { requiredKeys: ['index', 'uuid', 'name', 'memoryTotalMb', 'memoryUsedMb', 'memoryFreeMb'] },
  );
  const outcome = fc.record({
    jobId: str(128),
    tokensGenerated: edgy(1_000_000_000),
    promptTokens: edgy(1_000_000_000),
    timeToFirstTokenMs: edgy(86_400_000),
    tokensPerSecond: edgy(1_000_000),
    error: str(128),
  });
  const cache = fc.record({
    blockHashes: fc.array(
      fc.oneof(
        { weight: 30, arbitrary: fc.constant('0123456789abcdef') },
        { weight: 1, arbitrary: fc.oneof(fc.constantFrom('0123456789ABCDEF', '0123456789abcde', 'zz'), fc.string({ maxLength: 16 })) },
      ),
      { maxLength: 3 },
    ),
    usedCells: edgy(2 ** 40),
    totalCells: edgy(2 ** 40),
    usedSequences: edgy(100_000),
    totalSequences: edgy(100_000),
  });
  const update = fc.record({
    agentId: fc.oneof(
      { weight: 30, arbitrary: fc.constantFrom('gpu-1', 'a:b.c_d-e', 'x'.repeat(128)) },
      { weight: 1, arbitrary: fc.oneof(fc.constantFrom('', 'bad id', 'x'.repeat(129)), fc.string({ maxLength: 4 })) },
    ),
    freeVramMb: edgy(2 ** 50),
    freeRamMb: edgy(2 ** 50),
    totalRamMb: edgy(2 ** 50),
    runningJobs: edgy(100_000),
    queuedJobs: edgy(100_000),
    cpuPercent: edgy(100_000),
    rttMs: edgy(3_600_000),
    timestamp: fc.oneof(
      { weight: 30, arbitrary: edgy(2 ** 40) },
      { weight: 1, arbitrary: fc.constantFrom(Number.MAX_SAFE_INTEGER, Number.MAX_SAFE_INTEGER + 2) },
    ),
    gpus: fc.array(gpu, { maxLength: 2 }),
    activeJobIds: jobIds,
    startedJobIds: jobIds,
    rejectedJobIds: jobIds,
    completedJobs: fc.array(outcome, { maxLength: 2 }),
    prefixCache: fc.option(cache, { nil: undefined }),
  });

  it('passes only updates the schema accepts (it never lets through what the schema would refuse)', () => {
    fc.assert(
      fc.property(update, (u) => {
        if (healthUpdatePasses(u as unknown as HealthUpdate)) expect(accepted(u as unknown as HealthUpdate)).toBe(true);
      }),
      { numRuns: 5000 },
    );
  });

  it('passes what agents send (the schema is not asked), and validateHealthUpdate still names what is wrong', () => {
    const real = HealthUpdate.fromPartial({
      agentId: 'gpu-1',
      freeVramMb: 20_000,
      freeRamMb: 48_000,
      totalRamMb: 64_000,
      runningJobs: 2,
      cpuPercent: 37.5,
      rttMs: 0.8,
      timestamp: Date.now(),
      gpus: [
        {
          index: 0,
          uuid: 'GPU-1',
          name: 'NVIDIA H100',
          memoryTotalMb: 80_000,
          memoryUsedMb: 60_000,
          memoryFreeMb: 20_000,
          utilizationPercent: 91,
          temperatureC: 60,
        },
      ],
      activeJobIds: ['job-1', 'job-2'],
      completedJobs: [{ jobId: 'job-0', tokensGenerated: 32, promptTokens: 12, timeToFirstTokenMs: 14.5, tokensPerSecond: 180.2, error: '' }],
      prefixCache: { blockHashes: prefixBlockHashes('a'.repeat(600)), usedCells: 10, totalCells: 100, usedSequences: 1, totalSequences: 32 },
    });
    expect(healthUpdatePasses(real)).toBe(true);
    expect(accepted(real)).toBe(true);
    expect(() => validateHealthUpdate({ ...real, rttMs: Number.NaN })).toThrow(/rtt_ms/);
    expect(() => validateHealthUpdate({ ...real, completedJobs: [{ ...real.completedJobs[0]!, tokensPerSecond: -1 }] })).toThrow(
      /completed_jobs\[0\]\.tokens_per_second/,
    );
  });

  it('agrees with the schema on random updates, valid ones included: the fast path is taken, not skipped', () => {
    const samples = fc.sample(update, { numRuns: 2000, seed: 7 }) as unknown as HealthUpdate[];
    const disagreements = samples.filter((u) => healthUpdatePasses(u) !== accepted(u));
    expect(disagreements).toEqual([]);
    // Not a vacuous check: a fair share of the samples is valid.
    expect(samples.filter((u) => healthUpdatePasses(u)).length).toBeGreaterThan(samples.length / 50);
  });
});

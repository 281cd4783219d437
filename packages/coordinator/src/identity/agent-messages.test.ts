import { describe, expect, it } from '@jest/globals';
import { AgentRegistration, HealthUpdate, MAX_REPORTED_PREFIX_BLOCKS, prefixBlockHashes, type PrefixCacheReport } from '@titancompute/protocol';
import { InvalidRequestError } from '../errors.js';
import { validateHealthUpdate, validateRegistration } from './agent-messages.js';

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

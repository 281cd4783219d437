import { describe, expect, it } from '@jest/globals';
import { prefixBlockHashes, prefixText } from '@titancompute/protocol';
import { createPrefixAffinity } from './prefix-affinity.js';
import { createScheduler, type SchedulableAgent } from './scheduler.js';

const SYSTEM = 'You are a careful assistant. '.repeat(40); // ~1,160 characters: 4 whole blocks

describe('prefix blocks', () => {
  it('two prompts share exactly the blocks of their common prefix', () => {
    const a = prefixBlockHashes(`${SYSTEM}Question one?`);
    const b = prefixBlockHashes(`${SYSTEM}A different, much longer question that fills more blocks … `.padEnd(2000, '.'));
    expect(a).toHaveLength(4);
    expect(b.slice(0, 4)).toEqual(a);
    expect(b.length).toBeGreaterThan(4);
    expect(prefixBlockHashes(`x${SYSTEM}`)[0]).not.toBe(a[0]);
  });

  it("a chat's next turn keeps the previous turns' text as its prefix", () => {
    const turn1 = [
      { role: 'system', content: SYSTEM },
      { role: 'user', content: 'Hi' },
    ];
    const turn2 = [...turn1, { role: 'assistant', content: 'Hello!' }, { role: 'user', content: 'More' }];
    expect(prefixText('', turn2).startsWith(prefixText('', turn1))).toBe(true);
    expect(prefixText('plain prompt')).toBe('plain prompt');
  });
});

describe('prefix affinity', () => {
  const hashes = prefixBlockHashes(SYSTEM.repeat(2));

  it('approximate mode remembers what was sent where, and matches the longest known prefix', () => {
    const affinity = createPrefixAffinity({ mode: 'approximate' });
    affinity.recordGrant('a', hashes.slice(0, 5));
    expect(affinity.matchedBlocks('a', hashes)).toBe(5);
    expect(affinity.matchedBlocks('b', hashes)).toBe(0);
    affinity.applyReport('a', []); // reports are ignored in approximate mode
    expect(affinity.matchedBlocks('a', hashes)).toBe(5);
  });

  it('forgets the least recently sent blocks past its bound', () => {
    const affinity = createPrefixAffinity({ mode: 'approximate', maxBlocksPerAgent: 4 });
    affinity.recordGrant('a', hashes.slice(0, 4));
    affinity.recordGrant('a', prefixBlockHashes('z'.repeat(256 * 2)));
    expect(affinity.size('a')).toBe(4);
    expect(affinity.matchedBlocks('a', hashes)).toBe(4); // blocks 3 and 4 of the first prompt remain
    expect(affinity.matchedBlocks('a', hashes.slice(0, 2))).toBe(0);
  });

  it('precise mode: a report replaces what was known of the agent (grants count only until the next report)', () => {
    const affinity = createPrefixAffinity({ mode: 'precise' });
    const other = prefixBlockHashes('o'.repeat(256 * 4));
    affinity.applyReport('a', hashes.slice(0, 3));
    expect(affinity.reporting('a')).toBe(true);
    expect(affinity.matchedBlocks('a', hashes)).toBe(3);
    // Granted since the report: counted at once…
    affinity.recordGrant('a', other);
    expect(affinity.matchedBlocks('a', other)).toBe(4);
    // …until the next report says what the cache really holds (here: the grant's prefix evicted the first).
    affinity.applyReport('a', other.slice(0, 2));
    expect(affinity.matchedBlocks('a', other)).toBe(2);
    expect(affinity.matchedBlocks('a', hashes)).toBe(0);
    expect(affinity.anyHolds(hashes)).toBe(false);
    expect(affinity.size('a')).toBe(2);
    affinity.forget('a');
    expect(affinity.matchedBlocks('a', other)).toBe(0);
    expect(affinity.reporting('a')).toBe(false);
  });

  it('precise mode falls back to approximate for an agent that never reports (Ollama, OpenAI-compatible engines)', () => {
    const affinity = createPrefixAffinity({ mode: 'precise' });
    affinity.recordGrant('ollama', hashes.slice(0, 5));
    expect(affinity.reporting('ollama')).toBe(false);
    expect(affinity.matchedBlocks('ollama', hashes)).toBe(5);
    expect(affinity.anyHolds(hashes)).toBe(true);
  });

  it('precise mode keeps at most maxBlocksPerAgent of a report', () => {
    const affinity = createPrefixAffinity({ mode: 'precise', maxBlocksPerAgent: 2 });
    affinity.applyReport('a', hashes.slice(0, 5));
    expect(affinity.size('a')).toBe(2);
    expect(affinity.matchedBlocks('a', hashes)).toBe(2);
  });

  it('knows whether any agent holds any of a prompt’s blocks (and forgets with the agent)', () => {
    const affinity = createPrefixAffinity({ mode: 'approximate', maxBlocksPerAgent: 3 });
    expect(affinity.anyHolds(hashes)).toBe(false);
    affinity.recordGrant('a', hashes.slice(0, 2));
    affinity.recordGrant('b', hashes.slice(0, 2));
    expect(affinity.anyHolds(hashes.slice(1, 2))).toBe(true);
    affinity.forget('a');
    expect(affinity.anyHolds(hashes.slice(1, 2))).toBe(true);
    affinity.recordGrant('b', prefixBlockHashes('q'.repeat(256 * 3))); // evicts b's old blocks
    expect(affinity.anyHolds(hashes.slice(0, 2))).toBe(false);
  });

  it('mode off never matches', () => {
    const affinity = createPrefixAffinity({ mode: 'off' });
    affinity.recordGrant('a', hashes);
    expect(affinity.matchedBlocks('a', hashes)).toBe(0);
  });
});

describe('the scheduler with prefix affinity', () => {
  const agent = (agentId: string, runningJobs: number, maxJobs = 4): SchedulableAgent => ({
    agentId,
    supportedModels: new Set(['m']),
    maxJobs,
    runningJobs,
    queuedJobs: 0,
    reservedJobs: 0,
    totalVramMb: 0,
    freeVramMb: 0,
    totalRamMb: 1000,
    freeRamMb: 1000,
    rttMs: 0,
    tokensPerSecond: undefined,
    available: true,
    penalized: false,
  });
  const scheduler = createScheduler({ prefixLoadCap: 0.75 }); // 3 of 4 slots
  const warmOn = (id: string) => (a: SchedulableAgent) => (a.agentId === id ? 1 : 0);

  it('sends a request where its prefix is warm while that agent has room, even if it is busier', () => {
    const decision = scheduler.select([agent('cold', 0), agent('warm', 2)], { model: 'm', affinity: warmOn('warm') });
    expect(decision).toMatchObject({ outcome: 'scheduled', agent: { agentId: 'warm' } });
  });

  it('spills to the next best agent once the warm one is at the load cap', () => {
    const decision = scheduler.select([agent('cold', 0), agent('warm', 3)], { model: 'm', affinity: warmOn('warm') });
    expect(decision).toMatchObject({ outcome: 'scheduled', agent: { agentId: 'cold' } });
  });

  it('without affinity, load decides', () => {
    const decision = scheduler.select([agent('cold', 0), agent('warm', 2)], { model: 'm' });
    expect(decision).toMatchObject({ outcome: 'scheduled', agent: { agentId: 'cold' } });
  });
});

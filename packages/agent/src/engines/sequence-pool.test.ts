import { describe, expect, it } from '@jest/globals';
import { MAX_REPORTED_PREFIX_BLOCKS, prefixBlockHashes } from '@titancompute/protocol';
import { commonPrefixLength, createSequencePool, MIN_REUSED_TOKENS, type HeldPrompt } from './sequence-pool.js';

/** A fake context sequence: the tokens its KV cache holds (a generation sets them). */
interface FakeSequence {
  name: string;
  tokens: number[];
}

const range = (from: number, n: number) => Array.from({ length: n }, (_, i) => from + i);
const held = (text: string): HeldPrompt => ({ text, blockHashes: prefixBlockHashes(text) });
const poolOf = (n: number) => {
  const sequences: FakeSequence[] = Array.from({ length: n }, (_, i) => ({ name: `s${i}`, tokens: [] }));
  return { sequences, pool: createSequencePool(sequences, (s) => s.tokens) };
};
/** Takes a sequence for `tokens`, "evaluates" them into it and gives it back holding `text`. */
async function runOn(pool: ReturnType<typeof poolOf>['pool'], tokens: number[], text = 'x'.repeat(300)) {
  const lease = await pool.take(tokens, held(text));
  lease.sequence.tokens = [...tokens];
  lease.release(held(text));
  return lease;
}

describe('sequence pool', () => {
  it('commonPrefixLength counts the shared leading elements', () => {
    expect(commonPrefixLength([1, 2, 3], [1, 2, 4])).toBe(2);
    expect(commonPrefixLength([], [1])).toBe(0);
    expect(commonPrefixLength([1, 2], [1, 2, 3])).toBe(2);
  });

  it('takes the free sequence sharing the longest token prefix, and says how much of the prompt it holds', async () => {
    const { pool } = poolOf(3);
    const a = await runOn(pool, range(0, 100));
    const b = await runOn(pool, range(1000, 100));
    expect(b.sequence).not.toBe(a.sequence);
    // Shares 60 tokens with a's prompt (and nothing with b's).
    const warm = await pool.take([...range(0, 60), ...range(5000, 10)], held('y'));
    expect(warm.sequence).toBe(a.sequence);
    expect(warm.reusedTokens).toBe(60);
    warm.release(undefined);
    // The same prompt again: all of it but its last token (which must be decoded to generate).
    const again = await pool.take(range(1000, 100), held('z'));
    expect(again.sequence).toBe(b.sequence);
    expect(again.reusedTokens).toBe(99);
    again.release(undefined);
  });

  it('without a match (or one shorter than MIN_REUSED_TOKENS) takes the least recently used sequence, an empty one first', async () => {
    const { pool, sequences } = poolOf(3);
    const first = await runOn(pool, range(0, 50));
    const second = await runOn(pool, range(100, 50));
    // The third, never used, goes first.
    const third = await runOn(pool, range(200, 50));
    expect(new Set([first.sequence, second.sequence, third.sequence]).size).toBe(3);
    expect(third.sequence).toBe(sequences.find((s) => s !== first.sequence && s !== second.sequence));
    // No match: the least recently used (first) is evicted, although a prefix shorter than the minimum matches second's.
    const short = await pool.take([...range(100, MIN_REUSED_TOKENS - 1), 9999], held('w'));
    expect(short.sequence).toBe(first.sequence);
    expect(short.reusedTokens).toBe(0);
    short.release(undefined);
  });

  it('never hands a sequence to two generations at once: a busy warm one is skipped, and the next waits for a release', async () => {
    const { pool } = poolOf(2);
    const prompt = range(0, 100);
    await runOn(pool, prompt);
    const one = await pool.take(prompt, held('p'));
    const two = await pool.take(prompt, held('p'));
    expect(two.sequence).not.toBe(one.sequence);
    expect(one.reusedTokens).toBe(99);
    expect(two.reusedTokens).toBe(0);
    let third: Awaited<ReturnType<typeof pool.take>> | undefined;
    const waiting = pool.take(prompt, held('p')).then((lease) => (third = lease));
    await new Promise((r) => setImmediate(r));
    expect(third).toBeUndefined();
    expect(pool.state().busySequences).toBe(2);
    two.release(held('p'));
    await waiting;
    expect(third?.sequence).toBe(two.sequence);
    // Released twice is released once: the sequence is not handed out again while third holds it.
    two.release(held('p'));
    const fourth = pool.take(prompt, held('p'));
    let got = false;
    void fourth.then(() => (got = true));
    await new Promise((r) => setImmediate(r));
    expect(got).toBe(false);
    one.release(held('p'));
    expect((await fourth).sequence).toBe(one.sequence);
  });

  it('reports the block hashes the sequences hold, most recent first, deduplicated and bounded; the version moves on take and release', async () => {
    const { pool } = poolOf(4);
    const v0 = pool.state().version;
    const shared = 'S'.repeat(512);
    await runOn(pool, range(0, 40), `${shared}${'a'.repeat(256)}`);
    await runOn(pool, range(100, 40), `${shared}${'b'.repeat(256)}`);
    const state = pool.state();
    expect(state.version).toBe(v0 + 4);
    expect(state.usedSequences).toBe(2);
    const hashesB = prefixBlockHashes(`${shared}${'b'.repeat(256)}`);
    const hashesA = prefixBlockHashes(`${shared}${'a'.repeat(256)}`);
    // b's three blocks first (most recent), then a's last (its first two are b's too).
    expect(state.blockHashes).toEqual([...hashesB, hashesA[2]]);
    // Four sequences of 64 distinct blocks each would be 256: more are cut at the bound.
    const { pool: big } = poolOf(5);
    for (let i = 0; i < 5; i += 1) await runOn(big, range(i * 1000, 40), String(i).repeat(256 * 64));
    expect(big.state().blockHashes).toHaveLength(MAX_REPORTED_PREFIX_BLOCKS);
    expect(big.state().blockHashes[0]).toBe(prefixBlockHashes('4'.repeat(256))[0]);
  });

  it('a sequence released with unknown contents reports nothing and is the first taken for an unrelated prompt', async () => {
    const { pool } = poolOf(2);
    const a = await runOn(pool, range(0, 40));
    const failed = await pool.take(range(500, 40), held('f'.repeat(300)));
    expect(pool.state().blockHashes).toHaveLength(2);
    failed.release(undefined);
    expect(pool.state().blockHashes).toHaveLength(1);
    expect((await pool.take(range(900, 40), held('n'))).sequence).toBe(failed.sequence);
    expect(failed.sequence).not.toBe(a.sequence);
  });
});

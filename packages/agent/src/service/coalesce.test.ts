import { describe, expect, it } from '@jest/globals';
import type { GenerationPiece, GenerationStats } from '../engines/run-generation.js';
import { coalesce, type Batch } from './coalesce.js';

const STATS: GenerationStats = { tokensGenerated: 5, timeToFirstTokenMs: 1, tokensPerSecond: 100, finishReason: 'length', promptTokens: 2, durationMs: 50 };

/** A generation that yields `pieces`, waiting `gapMs` before each one (0: no wait at all). */
async function* generation(pieces: GenerationPiece[], gapMs: number, fail?: Error): AsyncGenerator<GenerationPiece, GenerationStats> {
  for (const piece of pieces) {
    if (gapMs > 0) await new Promise((r) => setTimeout(r, gapMs));
    yield piece;
  }
  if (fail) throw fail;
  return STATS;
}

const piece = (text: string, tokenIndex: number, tokens = 1): GenerationPiece => ({ text, tokenIndex, tokens });

async function drain(gen: AsyncGenerator<Batch, GenerationStats>, readDelayMs: number): Promise<{ batches: Batch[]; stats: GenerationStats }> {
  const batches: Batch[] = [];
  for (;;) {
    if (readDelayMs > 0) await new Promise((r) => setTimeout(r, readDelayMs));
    const r = await gen.next();
    if (r.done) return { batches, stats: r.value };
    batches.push(r.value);
  }
}

describe('coalesce', () => {
  const five = [piece('a', 0), piece('b', 1), piece('c', 2), piece('d', 3), piece('e', 4)];

  it('sends one message per token while the reader keeps up', async () => {
    const { batches, stats } = await drain(coalesce(generation(five, 5)), 0);
    expect(batches).toEqual(five.map((p) => ({ text: p.text, tokenIndex: p.tokenIndex, tokens: 1 })));
    expect(stats).toBe(STATS);
  });

  it('merges the tokens that piled up while the reader was busy, keeping index and count exact', async () => {
    const { batches } = await drain(coalesce(generation(five, 0)), 20);
    expect(batches.map((b) => b.text).join('')).toBe('abcde');
    expect(batches.length).toBeLessThan(5);
    expect(batches.reduce((n, b) => n + b.tokens, 0)).toBe(5);
    let next = 0;
    for (const b of batches) {
      expect(b.tokenIndex).toBe(next);
      next += b.tokens;
    }
  });

  it('folds pieces without text into the next message and never sends an empty one', async () => {
    const pieces = [piece('', 0), piece('x', 1), piece('', 2, 0), piece('y', 2)];
    const { batches } = await drain(coalesce(generation(pieces, 3)), 0);
    expect(batches.every((b) => b.text !== '')).toBe(true);
    expect(batches.map((b) => b.text).join('')).toBe('xy');
    expect(batches[0]).toMatchObject({ tokenIndex: 0 });
  });

  it('passes an engine failure on after the text that came before it', async () => {
    const gen = coalesce(generation([piece('a', 0)], 2, new Error('engine died')));
    await expect(gen.next()).resolves.toMatchObject({ value: { text: 'a' } });
    await expect(gen.next()).rejects.toThrow('engine died');
  });

  it("sends the first batch at once, and a later one only after what the piece's own turn scheduled (the engine's next step)", async () => {
    const events: string[] = [];
    // Like node-llama-cpp: each piece comes with the engine's next decode scheduled on the event loop.
    async function* engineLike(): AsyncGenerator<GenerationPiece, GenerationStats> {
      for (let i = 0; i < 3; i++) {
        await new Promise((r) => setTimeout(r, 5));
        setImmediate(() => events.push(`engine step after piece ${i}`));
        events.push(`piece ${i}`);
        yield piece(String(i), i);
      }
      return STATS;
    }
    const batches = coalesce(engineLike());
    for (let r = await batches.next(); !r.done; r = await batches.next()) events.push(`batch ${r.value.text}`);
    expect(events).toEqual([
      'piece 0',
      'batch 0',
      'engine step after piece 0',
      'piece 1',
      'engine step after piece 1',
      'batch 1',
      'piece 2',
      'engine step after piece 2',
      'batch 2',
    ]);
  });
});

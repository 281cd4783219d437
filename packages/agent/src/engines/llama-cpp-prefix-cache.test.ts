/**
 * The llama.cpp engine keeps prompt prefixes warm, on the bundled GGUF (real llama.cpp): a prompt
 * sharing a long prefix with one a sequence holds is evaluated from where they differ (measured by
 * llama.cpp's token meter, not by timing), sequences are evicted least recently used first, and
 * no sequence serves two generations at once.
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { prefixBlockHashes, prefixText } from '@titancompute/protocol';
import type { EngineChatMessage, GenerateRequest } from './engine.js';
import { createLlamaCppEngine, type LlamaCppEngine } from './llama-cpp-engine.js';

let engine: LlamaCppEngine;
beforeAll(async () => {
  engine = createLlamaCppEngine({ threads: 1, sequences: 2, contextSize: 2048, gpu: false });
  await engine.load();
}, 120_000);
afterAll(async () => {
  await engine?.close();
});

/** About 600 tokens of text that differs from one `seed` to another from its first word. */
const prefixOf = (seed: string) => Array.from({ length: 150 }, (_, i) => `${seed}${i % 23} item${i % 7},`).join(' ');
/** Prompt tokens looked up and found in the cache so far. */
const counts = () => engine.prefixCache()!.counts.find((c) => c.model === engine.models[0]) ?? { queryTokens: 0, hitTokens: 0 };

/** Runs one generation; returns its text and the prompt tokens it looked up and found in the cache. */
async function generate(request: { prompt?: string; messages?: EngineChatMessage[]; maxTokens?: number }) {
  const before = counts();
  const full: GenerateRequest = {
    model: engine.models[0]!,
    prompt: request.prompt ?? '',
    messages: request.messages,
    maxTokens: request.maxTokens ?? 4,
    temperature: 0,
    parameters: {},
    signal: AbortSignal.timeout(60_000),
  };
  let text = '';
  let promptTokens = 0;
  for await (const chunk of engine.generate(full)) {
    text += chunk.text;
    promptTokens = chunk.promptTokens ?? promptTokens;
  }
  const after = counts();
  return { text, promptTokens, queried: after.queryTokens - before.queryTokens, hits: after.hitTokens - before.hitTokens };
}

describe('llama-cpp engine prefix cache', () => {
  const a = prefixOf('alpha');
  const b = prefixOf('beta');
  const c = prefixOf('gamma');

  it('evaluates only the suffix of a prompt whose long prefix a sequence holds; a cold prompt hits nothing', async () => {
    const cold = await generate({ prompt: `${a} Question one: what is first?` });
    expect(cold.hits).toBe(0);
    expect(cold.queried).toBeGreaterThan(500);
    const warm = await generate({ prompt: `${a} Question two: what is second?` });
    // Everything up to the suffix came from the cache: only the few tokens of the new question were evaluated.
    expect(warm.hits).toBeGreaterThan(500);
    expect(warm.queried - warm.hits).toBeLessThan(15);
    // The sequence reports the blocks of the prompt text it holds, exactly as the coordinator hashes them.
    expect(engine.prefixCache()!.blockHashes).toEqual(expect.arrayContaining(prefixBlockHashes(`${a} Question two: what is second?`)));
  }, 60_000);

  it('reuses a chat conversation: the next turn evaluates only the turns after the last one it holds', async () => {
    const turn1: EngineChatMessage[] = [
      { role: 'system', content: b },
      { role: 'user', content: 'First question?' },
    ];
    const first = await generate({ messages: turn1 });
    expect(first.hits).toBe(0);
    const turn2: EngineChatMessage[] = [...turn1, { role: 'assistant', content: first.text }, { role: 'user', content: 'And the second?' }];
    const second = await generate({ messages: turn2 });
    expect(second.hits).toBeGreaterThan(first.queried - 10);
    expect(second.queried - second.hits).toBeLessThan(40);
    // Reported as the coordinator hashes a chat: its canonical messages JSON.
    expect(engine.prefixCache()!.blockHashes).toEqual(expect.arrayContaining(prefixBlockHashes(prefixText('', turn2))));
  }, 60_000);

  it('evicts the least recently used sequence for an unrelated prompt', async () => {
    // Sequences now hold a (second most recent) and b's chat (most recent).
    expect((await generate({ prompt: `${a} Question three?` })).hits).toBeGreaterThan(500); // a is now the most recent
    // Evicts b's chat, not a (cold: at most the BOS token every prompt starts with was reused).
    expect((await generate({ prompt: `${c} Question one?` })).hits).toBeLessThanOrEqual(1);
    const state = engine.prefixCache()!;
    expect(state.blockHashes).toEqual(expect.arrayContaining(prefixBlockHashes(`${c} Question one?`)));
    expect(state.blockHashes).toEqual(expect.arrayContaining(prefixBlockHashes(`${a} Question three?`)));
    expect(state.blockHashes).not.toContain(prefixBlockHashes(prefixText('', [{ role: 'system', content: b }]))[0]);
    expect(state.usedSequences).toBe(2);
    expect(state.totalSequences).toBe(2);
    expect(state.usedCells).toBeGreaterThan(1000);
    expect(state.totalCells).toBe(2 * 2048);
    expect((await generate({ prompt: `${a} Question four?` })).hits).toBeGreaterThan(500);
    expect(
      (
        await generate({
          messages: [
            { role: 'system', content: b },
            { role: 'user', content: 'First question?' },
          ],
        })
      ).hits,
    ).toBeLessThanOrEqual(1);
  }, 60_000);

  it('never runs two generations on one sequence: concurrent greedy runs of one prompt all match a run alone', async () => {
    const prompt = `${c} Question two: which one?`;
    const alone = await generate({ prompt, maxTokens: 8 });
    const before = counts();
    const together = await Promise.all([1, 2, 3, 4].map(() => generate({ prompt, maxTokens: 8 })));
    for (const run of together) expect(run.text).toBe(alone.text);
    // Two sequences for four generations: one holds the prompt (the run alone), the other b's
    // chat; the two generations that waited for a sequence found the prompt warm too.
    const after = counts();
    expect(after.queryTokens - before.queryTokens).toBe(4 * alone.queried);
    expect(after.hitTokens - before.hitTokens).toBeGreaterThanOrEqual(3 * (alone.queried - 15));
  }, 60_000);
});

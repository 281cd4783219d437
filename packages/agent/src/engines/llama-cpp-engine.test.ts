/**
 * The embedded llama.cpp engine with the bundled GGUF (random weights, so the text is noise):
 * chat messages go through the chat template node-llama-cpp resolves from the model's metadata.
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import type { EngineChatMessage } from './engine.js';
import { chatHistoryOf, createLlamaCppEngine, type LlamaCppEngine } from './llama-cpp-engine.js';
import { runGeneration, type GenerationPiece, type GenerationStats } from './run-generation.js';

let engine: LlamaCppEngine;
beforeAll(async () => {
  engine = createLlamaCppEngine({ threads: 1, sequences: 1, contextSize: 512, gpu: false });
  await engine.load();
}, 120_000);
afterAll(async () => {
  await engine?.close();
});

async function run(extra: { prompt: string; messages?: EngineChatMessage[] }): Promise<{ pieces: GenerationPiece[]; stats: GenerationStats }> {
  const gen = runGeneration(engine, {
    model: engine.models[0]!,
    maxTokens: 6,
    temperature: 0.7,
    parameters: { seed: '1' },
    signal: AbortSignal.timeout(60_000),
    ...extra,
  });
  const pieces: GenerationPiece[] = [];
  for (;;) {
    const r = await gen.next();
    if (r.done) return { pieces, stats: r.value };
    pieces.push(r.value);
  }
}

describe('llama-cpp engine chat', () => {
  it('resolves the chat wrapper from the GGUF metadata at load', () => {
    // The bundled model has no Jinja chat template and a generic architecture: node-llama-cpp's general wrapper.
    expect(engine.chatWrapperName).toBe('General');
  });

  it('maps messages to a chat history ending in a new model response (an assistant turn last is continued)', () => {
    expect(
      chatHistoryOf([
        { role: 'system', content: 's' },
        { role: 'user', content: 'u' },
      ]),
    ).toEqual([
      { type: 'system', text: 's' },
      { type: 'user', text: 'u' },
      { type: 'model', response: [] },
    ]);
    expect(
      chatHistoryOf([
        { role: 'user', content: 'u' },
        { role: 'assistant', content: 'a' },
      ]),
    ).toEqual([
      { type: 'user', text: 'u' },
      { type: 'model', response: ['a'] },
    ]);
  });

  it('streams tokens for chat messages, evaluating the templated conversation (more prompt tokens than the raw contents)', async () => {
    const messages: EngineChatMessage[] = [
      { role: 'system', content: 'be brief' },
      { role: 'user', content: 'hi' },
    ];
    const raw = await run({ prompt: 'be brief hi' });
    const chat = await run({ prompt: '', messages });
    expect(chat.pieces.length).toBeGreaterThan(0);
    expect(chat.stats.tokensGenerated).toBeGreaterThan(0);
    expect(chat.stats.tokensGenerated).toBeLessThanOrEqual(6);
    // The general template adds role headers ("### Human", "### Assistant") around the contents.
    expect(chat.stats.promptTokens).toBeGreaterThan(raw.stats.promptTokens + 5);
    // The same one user turn as a prompt and as a message: only the chat one is templated.
    const asPrompt = await run({ prompt: 'hi' });
    const asChat = await run({ prompt: '', messages: [{ role: 'user', content: 'hi' }] });
    expect(asChat.stats.promptTokens).toBeGreaterThan(asPrompt.stats.promptTokens);
  }, 120_000);
});

/**
 * The OpenAI-compatible API end to end, as a user meets it: the built bins (coordinator and one
 * agent on the embedded llama.cpp engine with the bundled model) and the official `openai` npm
 * client pointed at the coordinator, in relay mode and in redirect mode.
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import OpenAI from 'openai';
import { startCluster, waitForAgents } from '../scripts/lib/launch.mjs';
import { MODEL, tempDir, type Cluster } from './support.js';

describe.each(['relay', 'redirect'] as const)('the OpenAI API on the real engine (%s)', (mode) => {
  let cluster: Cluster;
  let openai: OpenAI;
  beforeAll(async () => {
    cluster = await startCluster({ dataDir: tempDir(`openai-${mode}`), agents: 1, coordinatorArgs: ['--openai-mode', mode] });
    await waitForAgents(cluster.coordinator.address, 1);
    openai = new OpenAI({ baseURL: `http://127.0.0.1:${cluster.coordinator.httpPort}/v1`, apiKey: 'none', maxRetries: 0 });
  }, 90_000);
  afterAll(async () => {
    await cluster?.stop();
  }, 30_000);

  it('chat: the messages reach the engine, which applies the model chat template; usage counts real tokens', async () => {
    const res = await openai.chat.completions.create({
      model: MODEL,
      messages: [
        { role: 'system', content: 'You are terse.' },
        { role: 'user', content: 'Say hello.' },
      ],
      max_tokens: 8,
      temperature: 0,
    });
    expect(res.choices[0]!.message.content!.length).toBeGreaterThan(0);
    expect(res.choices[0]!.finish_reason).toBe('length');
    expect(res.usage!.completion_tokens).toBe(8);
    // The chat template wraps the messages: more prompt tokens than the bare contents.
    expect(res.usage!.prompt_tokens).toBeGreaterThan(6);
  }, 60_000);

  it('a stop sequence ends the text before it with finish_reason stop (same greedy run with and without it)', async () => {
    const base = { model: MODEL, prompt: 'Once upon a time', max_tokens: 24, temperature: 0, seed: 1 } as const;
    const full = (await openai.completions.create(base)).choices[0]!.text;
    expect(full.length).toBeGreaterThan(6);
    // A stop string from the middle of the greedy output (whatever it holds: mid-token, spaces,
    // multi-byte characters): the same run stops right before its first occurrence.
    const at = Math.floor(full.length / 2);
    const stop = full.slice(at, at + 3);
    const first = full.indexOf(stop);
    const stopped = (await openai.completions.create({ ...base, stop: [stop] })).choices[0]!;
    expect(stopped.finish_reason).toBe('stop');
    expect(stopped.text).toBe(full.slice(0, first));
  }, 60_000);

  it('streams tokens as they are generated, then [DONE]', async () => {
    const stream = await openai.chat.completions.create({ model: MODEL, messages: [{ role: 'user', content: 'Count.' }], max_tokens: 12, stream: true });
    const deltas: string[] = [];
    for await (const chunk of stream) if (chunk.choices[0]?.delta.content) deltas.push(chunk.choices[0].delta.content);
    expect(deltas.length).toBeGreaterThan(1);
  }, 60_000);

  it('embeddings: vectors of the model size, deterministic per input', async () => {
    const res = await openai.embeddings.create({ model: MODEL, input: ['hello', 'world', 'hello'] });
    expect(res.data).toHaveLength(3);
    const [a, b, c] = res.data.map((d) => d.embedding);
    expect(a!.length).toBeGreaterThan(0);
    expect(b).toHaveLength(a!.length);
    expect(c).toEqual(a);
    expect(b).not.toEqual(a);
    expect(res.usage.prompt_tokens).toBeGreaterThan(0);
  }, 60_000);
});

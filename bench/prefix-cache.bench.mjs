#!/usr/bin/env node
/**
 * The llama.cpp engine's prefix cache, measured on the real engine: the bundled tiny model
 * (random weights, real llama.cpp) in-process with the agent's settings (default threads, 4
 * sequences, context 2048 per sequence), prompts of a 1,500-token prefix and a short suffix.
 * Each round sends a cold prompt (a prefix no sequence holds: its first word differs) and then a
 * warm one (the same prefix, another suffix), so both are measured in the same run on the same
 * engine; the cold one is what every prompt cost before the cache (the engine cleared a
 * sequence's history for each generation). TTFT from `runGeneration` (call → first text);
 * prompt tokens looked up / found from the engine's own counts (`prefixCache()`, llama.cpp's
 * token meter: tokens not evaluated). Prints one markdown section.
 *
 * Env: PREFIX_BENCH_ROUNDS (default 30).
 */
import { createLog, importFromPackage, median, percentile } from './lib/index.mjs';

const ROUNDS = Number(process.env.PREFIX_BENCH_ROUNDS ?? 30);
const PREFIX_TOKENS = 1500;
const MAX_TOKENS = 16;
const SEQUENCES = 4;
const CONTEXT_SIZE = 2048;
const log = createLog('[prefix-cache]');

const { createLlamaCppEngine, defaultLlamaThreads, runGeneration, DEFAULT_MODEL_PATH } = await import('@titancompute/agent');
const { getLlama, LlamaLogLevel } = await importFromPackage('agent', 'node-llama-cpp');

/**
 * A prefix of about PREFIX_TOKENS tokens (the model's tokenizer) for round `round`, different
 * from every other round's from its first word on.
 */
async function prefixMaker() {
  const llama = await getLlama({ gpu: false, build: 'never', logLevel: LlamaLogLevel.error });
  const model = await llama.loadModel({ modelPath: DEFAULT_MODEL_PATH });
  const body = (n) => Array.from({ length: n }, (_, i) => `shelf${i % 41} holds part${(i * 7) % 53};`).join(' ');
  let words = 100;
  while (model.tokenize(body(words)).length < PREFIX_TOKENS) words += 10;
  const text = body(words);
  const tokens = model.tokenize(`Document 0: ${text}`).length;
  await model.dispose();
  await llama.dispose();
  return { make: (round) => `Document ${round}: ${text}`, tokens };
}

const { make, tokens: prefixTokens } = await prefixMaker();
const threads = defaultLlamaThreads();
const engine = createLlamaCppEngine({ threads, sequences: SEQUENCES, contextSize: CONTEXT_SIZE, gpu: false });
await engine.load();
const model = engine.models[0];
const counts = () => engine.prefixCache()?.counts.find((c) => c.model === model) ?? { queryTokens: 0, hitTokens: 0 };

/** One greedy generation: its TTFT and the prompt tokens it looked up / found in the cache. */
async function generate(prompt) {
  const before = counts();
  const gen = runGeneration(engine, { model, prompt, maxTokens: MAX_TOKENS, temperature: 0, parameters: {}, signal: AbortSignal.timeout(120_000) });
  let r = await gen.next();
  while (!r.done) r = await gen.next();
  const after = counts();
  return { ttftMs: r.value.timeToFirstTokenMs, queried: after.queryTokens - before.queryTokens, hits: after.hitTokens - before.hitTokens };
}

const suffixes = ['Which shelf holds part 7?', 'Where is part 12 kept?', 'List the shelves of part 3.'];
// Warm-up: the first generation pays one-off costs (buffers, threads).
await generate(`${make(-1)} warm-up`);
const cold = [];
const warm = [];
for (let round = 0; round < ROUNDS; round += 1) {
  const prefix = make(round);
  cold.push(await generate(`${prefix} ${suffixes[round % 3]}`));
  warm.push(await generate(`${prefix} ${suffixes[(round + 1) % 3]}`));
  if (round % 10 === 9) log(`round ${round + 1}/${ROUNDS}`);
}
await engine.close();

const ms = (v) => (v >= 100 ? v.toFixed(0) : v.toFixed(1));
const sum = (runs, key) => runs.reduce((n, r) => n + r[key], 0);
const row = (name, runs) => {
  const ttft = runs.map((r) => r.ttftMs);
  const queried = sum(runs, 'queried');
  const hits = sum(runs, 'hits');
  return {
    line: `| ${name} | ${ms(median(ttft))} | ${ms(percentile(ttft, 0.9))} | ${(queried / runs.length).toFixed(0)} | ${((queried - hits) / runs.length).toFixed(0)} | ${((100 * hits) / queried).toFixed(1)} % |`,
    median: median(ttft),
  };
};
const c = row('cold (prefix in no sequence)', cold);
const w = row('warm (prefix held by a sequence)', warm);
const all = [...cold, ...warm];
const overall = (100 * sum(all, 'hits')) / sum(all, 'queried');
const ratio = c.median / w.median;

process.stdout.write(`## Prefix cache of the llama.cpp engine

The real engine in-process (\`createLlamaCppEngine\`, bundled \`llama-2-tiny-random.gguf\`, CPU, ${threads} thread(s), ${SEQUENCES} sequences of ${CONTEXT_SIZE} tokens), greedy, ${MAX_TOKENS} tokens per generation. Prompts: a ${prefixTokens}-token prefix and a short question. ${ROUNDS} rounds, each a cold prompt (a new prefix: what every prompt cost before this cache, when the engine cleared a sequence for each generation) then a warm one (the same prefix, another question). TTFT = call → first text; evaluated = prompt tokens llama.cpp decoded (its token meter); hit ratio = prompt tokens found in the cache / looked up (\`titan_agent:prefix_cache_hits_total\` / \`…_queries_total\`).

| prompts | TTFT p50 ms | TTFT p90 ms | prompt tokens | evaluated | hit ratio |
|---|---:|---:|---:|---:|---:|
${c.line}
${w.line}

Verdict: warm TTFT is ${ratio.toFixed(1)}× lower than cold (p50 ${ms(c.median)} → ${ms(w.median)} ms); hit ratio ${overall.toFixed(1)} % over all ${all.length} prompts (half of them cold). The tiny model prefills fast; a real model's prefill costs far more per token, so the saving grows with it.

_Ran with \`node bench/run.mjs prefix-cache\` (\`pnpm bench prefix-cache\` builds first); one run on the machine below._
`);

#!/usr/bin/env node
/**
 * The OpenAI-compatible API: what relaying (coordinator in the token path) and redirecting (307 to
 * the agent, zero-proxy) cost against our own SDK's direct stream.
 *
 * Two clusters side by side, each a coordinator and one agent (embedded llama.cpp, bundled model,
 * 64 slots): one coordinator with `--openai-mode relay`, one with `--openai-mode redirect`. On each,
 * the baseline is our SDK's direct flow measured in the same rounds (RequestInference, then
 * StreamInference straight from the agent), interleaved with the official `openai` client streaming
 * chat completions from the coordinator's `/v1`. Reports TTFT p50/p99 (request start → first content
 * token, both paths including scheduling) and aggregate tokens/s at 1, 16 and 64 concurrent streams.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { Agent, request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import OpenAI from 'openai';
import { TitanClient } from '@titancompute/client';
import { startCluster, waitForAgents } from '../scripts/lib/launch.mjs';
import { createLog, percentile } from './lib/index.mjs';

const MODEL = 'llama-2-tiny-random';
const CONCURRENCY = [1, 16, 64];
const TOKENS = 24;
const ROUNDS = 3;
const log = createLog('[openai-api]');

/** Runs `concurrency` streams at once; returns TTFTs (ms), tokens and seconds. */
async function runStreams(concurrency, stream) {
  const ttfts = [];
  let tokens = 0;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async (_, i) => {
      const t0 = performance.now();
      let first = true;
      for await (const n of stream(i)) {
        if (n === 0) continue;
        if (first) {
          ttfts.push(performance.now() - t0);
          first = false;
        }
        tokens += n;
      }
    }),
  );
  return { ttfts, tokens, seconds: (performance.now() - started) / 1000 };
}

/** Our SDK's direct stream: yields token counts. */
async function* sdkStream(client, i) {
  for await (const chunk of client.generate({ model: MODEL, prompt: `Story ${i}:`, maxTokens: TOKENS, temperature: 0.7 })) {
    if (!chunk.done) yield chunk.tokens ?? 1;
  }
}

/** The openai client's streamed chat completion: yields 1 per content delta. */
async function* openAiStream(openai, i) {
  const stream = await openai.completions.create({ model: MODEL, prompt: `Story ${i}:`, max_tokens: TOKENS, temperature: 0.7, stream: true });
  for await (const chunk of stream) yield chunk.choices[0]?.text ? 1 : 0;
}

/**
 * A lean HTTP client for the same request (keep-alive, follows one 307, splits SSE events): what
 * the server path costs without the openai client's own work. Yields 1 per content event.
 */
async function* rawStream(base, keepAlive, i, target = `${base}/v1/completions`) {
  const body = JSON.stringify({ model: MODEL, prompt: `Story ${i}:`, max_tokens: TOKENS, temperature: 0.7, stream: true });
  const res = await new Promise((resolve, reject) => {
    const req = request(
      target,
      { method: 'POST', agent: keepAlive, headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) } },
      resolve,
    );
    req.on('error', reject);
    req.end(body);
  });
  if (res.statusCode === 307) {
    res.resume();
    yield* rawStream(base, keepAlive, i, res.headers.location);
    return;
  }
  if (res.statusCode !== 200) throw new Error(`HTTP ${res.statusCode}`);
  res.setEncoding('utf8');
  let buffered = '';
  for await (const chunk of res) {
    buffered += chunk;
    let end;
    while ((end = buffered.indexOf('\n\n')) >= 0) {
      const event = buffered.slice(0, end);
      buffered = buffered.slice(end + 2);
      if (event === 'data: [DONE]') return;
      yield event.includes('"text":""') ? 0 : 1;
    }
  }
}

async function startOne(mode) {
  const dataDir = mkdtempSync(join(tmpdir(), `titan-bench-oai-${mode}-`));
  const cluster = await startCluster({
    dataDir,
    agents: 1,
    agentArgs: ['--max-concurrent-jobs', '64', '--max-queue', '64'],
    coordinatorArgs: ['--openai-mode', mode, '--heartbeat-interval', '1s', '--max-client-share', '1'],
  });
  await waitForAgents(cluster.coordinator.address, 1);
  const client = new TitanClient({ coordinator: cluster.coordinator.address, clientId: `bench-${mode}` });
  const openai = new OpenAI({ baseURL: `http://127.0.0.1:${cluster.coordinator.httpPort}/v1`, apiKey: 'none', maxRetries: 0 });
  const base = `http://127.0.0.1:${cluster.coordinator.httpPort}`;
  const keepAlive = new Agent({ keepAlive: true, maxSockets: 256 });
  return {
    mode,
    client,
    openai,
    raw: (i) => rawStream(base, keepAlive, i),
    async stop() {
      client.close();
      keepAlive.destroy();
      await cluster.stop();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

const clusters = [];
try {
  for (const mode of ['relay', 'redirect']) clusters.push(await startOne(mode));
  // Warm-up: both paths of both clusters.
  for (const c of clusters) {
    await runStreams(2, (i) => sdkStream(c.client, i));
    await runStreams(2, (i) => openAiStream(c.openai, i));
    await runStreams(2, (i) => c.raw(i));
  }
  const PATHS = ['direct', 'raw', 'openai'];
  const rows = [];
  for (const concurrency of CONCURRENCY) {
    for (const c of clusters) {
      const acc = Object.fromEntries(PATHS.map((p) => [p, { ttfts: [], tokens: 0, seconds: 0 }]));
      for (let round = 0; round < ROUNDS; round += 1) {
        // Rotate the order so no path always runs first (or after the same one).
        const order = PATHS.map((_, k) => PATHS[(k + round) % PATHS.length]);
        for (const path of order) {
          const r = await runStreams(concurrency, (i) => (path === 'direct' ? sdkStream(c.client, i) : path === 'raw' ? c.raw(i) : openAiStream(c.openai, i)));
          acc[path].ttfts.push(...r.ttfts);
          acc[path].tokens += r.tokens;
          acc[path].seconds += r.seconds;
        }
      }
      const sum = (p) => ({ p50: percentile(acc[p].ttfts, 0.5), p99: percentile(acc[p].ttfts, 0.99), tps: acc[p].tokens / acc[p].seconds });
      const row = { concurrency, mode: c.mode, direct: sum('direct'), raw: sum('raw'), openai: sum('openai') };
      log(`c=${concurrency} ${c.mode}: ttft p50 raw ${row.raw.p50.toFixed(2)} / openai ${row.openai.p50.toFixed(2)} vs direct ${row.direct.p50.toFixed(2)} ms`);
      rows.push(row);
    }
  }
  const f = (n, d = 1) => (Number.isFinite(n) ? n.toFixed(d) : 'n/a');
  const lines = [
    '## OpenAI-compatible API: relay and redirect vs. the SDK direct stream',
    '',
    `Completions of ${TOKENS} tokens streamed from the coordinator's \`/v1\` (relay: the coordinator relays the agent's SSE stream; ` +
      "redirect: 307 to the agent's own `/v1`, the client streams from the agent) by two clients — a lean HTTP client (keep-alive, " +
      "splits SSE events: the server path alone) and the official `openai` npm client (what users run) — against our SDK's direct flow " +
      `(RequestInference, then StreamInference from the agent) on the same cluster, ${ROUNDS} rounds with the order rotated. ` +
      'TTFT = request start → first token, scheduling included on every path. Two clusters (one per mode), each a coordinator and one ' +
      "agent (embedded llama.cpp, bundled model, 64 slots); clients, servers and engine share this machine's cores.",
    '',
    '| streams | mode | SDK TTFT p50 ms | HTTP TTFT p50 ms | openai TTFT p50 ms | HTTP − SDK p50 ms | SDK p99 ms | HTTP p99 ms | openai p99 ms | SDK tok/s | HTTP tok/s | openai tok/s | HTTP / SDK tok/s |',
    '|---|---|---|---|---|---|---|---|---|---|---|---|---|',
    ...rows.map(
      (r) =>
        `| ${r.concurrency} | ${r.mode} | ${f(r.direct.p50, 2)} | ${f(r.raw.p50, 2)} | ${f(r.openai.p50, 2)} | ${f(r.raw.p50 - r.direct.p50, 2)} | ` +
        `${f(r.direct.p99, 2)} | ${f(r.raw.p99, 2)} | ${f(r.openai.p99, 2)} | ${f(r.direct.tps)} | ${f(r.raw.tps)} | ${f(r.openai.tps)} | ${f(r.raw.tps / r.direct.tps, 2)}× |`,
    ),
    '',
  ];
  const single = (mode) => rows.find((r) => r.concurrency === 1 && r.mode === mode);
  const relay = single('relay');
  const redirect = single('redirect');
  const relayAdded = relay.raw.p50 - relay.direct.p50;
  const redirectTtft = (redirect.raw.p50 / redirect.direct.p50 - 1) * 100;
  const redirectTps = (redirect.raw.tps / redirect.direct.tps - 1) * 100;
  lines.push(
    `Goals, at 1 stream (HTTP client): relay adds < 1 ms p50 TTFT over direct — measured ${f(relayAdded, 2)} ms, ${relayAdded < 1 ? 'met' : 'NOT met'}; ` +
      `redirect within 5 % of direct — TTFT ${f(redirectTtft, 1)} %, tokens/s ${f(redirectTps, 1)} %, ${redirectTtft <= 5 && redirectTps >= -5 ? 'met' : 'NOT met'}. ` +
      'The OpenAI paths make one HTTP request where the SDK makes two gRPC calls (RequestInference, then StreamInference), parse JSON and ' +
      'frame SSE where the SDK reads protobuf; under concurrency the clients themselves compete with the engine for the 2 cores.',
  );
  console.log(lines.join('\n'));
} finally {
  for (const c of clusters) await c.stop();
}

#!/usr/bin/env node
/**
 * Client SDK overhead: the same generations through `TitanClient.generate` and through bare
 * nice-grpc stubs (RequestInference + StreamInference, no validation, failover, mapping or
 * chunk objects), against one real coordinator and agent (scripted engine, 32 tokens ~1 ms apart) on
 * 127.0.0.1. Runs interleaved, sequential then 8-way concurrent. Target: SDK ≤ 1.10× baseline.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { startCoordinator } from '@titancompute/coordinator';
import { startAgent } from '@titancompute/agent';
import { AgentServiceDefinition, CoordinatorServiceDefinition, createProtoVersionClientMiddleware, createTitanChannel } from '@titancompute/protocol';
import { TitanClient } from '@titancompute/client';
import { createLog, importFromPackage, percentile } from './lib/index.mjs';

// nice-grpc is a dependency of the client package, not of the repo root.
const { createClientFactory } = await importFromPackage('client', 'nice-grpc');

const TOKENS = 32;
const SEQUENTIAL = 100;
const CONCURRENCY = 8;
const CONCURRENT_PER_WORKER = 10;
const log = createLog('[client.bench]');

const engine = {
  name: 'scripted',
  models: ['scripted'],
  async load() {},
  async close() {},
  async *generate(req) {
    for (let i = 0; i < req.maxTokens; i++) {
      await new Promise((r) => setTimeout(r, 1));
      if (req.signal.aborted) return;
      yield { text: `w${i} `, tokens: 1 };
    }
  },
};

const dataDir = mkdtempSync(join(tmpdir(), 'titan-client-bench-'));
const coordinator = await startCoordinator({ host: '127.0.0.1', port: 0, httpPort: 0, dataDir, logLevel: 'silent' });
const agent = await startAgent({
  agentId: 'bench-agent',
  host: '127.0.0.1',
  port: 0,
  coordinator: coordinator.address,
  joinToken: coordinator.joinToken,
  engine,
  maxConcurrentJobs: 1024,
  maxQueue: 0,
  logLevel: 'silent',
  heartbeatIntervalMs: 500,
});
const sdk = new TitanClient({ coordinator: coordinator.address });
for (let i = 0; i < 200; i++) {
  if ((await sdk.status()).healthyAgents > 0) break;
  await new Promise((r) => setTimeout(r, 25));
}

// Baseline: bare stubs on cached channels.
const factory = createClientFactory().use(createProtoVersionClientMiddleware());
const rawCoordinator = factory.create(CoordinatorServiceDefinition, createTitanChannel(coordinator.address));
const rawAgents = new Map();
async function baselineOnce() {
  const t0 = performance.now();
  const grant = await rawCoordinator.requestInference({
    clientId: 'bench',
    model: 'scripted',
    prompt: 'p',
    maxTokens: TOKENS,
    temperature: 0,
    temperatureSet: true,
    parameters: {},
    excludeAgentIds: [],
  });
  let a = rawAgents.get(grant.agentEndpoint);
  if (!a) rawAgents.set(grant.agentEndpoint, (a = factory.create(AgentServiceDefinition, createTitanChannel(grant.agentEndpoint))));
  let ttft = 0;
  let n = 0;
  for await (const m of a.streamInference({
    sessionToken: grant.sessionToken,
    model: 'scripted',
    prompt: 'p',
    maxTokens: grant.maxTokens,
    temperature: grant.temperature,
    stream: true,
    options: {},
  })) {
    if (m.done) break;
    if (n++ === 0) ttft = performance.now() - t0;
  }
  return { ttft, total: performance.now() - t0, n };
}
async function sdkOnce() {
  const t0 = performance.now();
  let ttft = 0;
  let n = 0;
  for await (const c of sdk.generate({ model: 'scripted', prompt: 'p', maxTokens: TOKENS, temperature: 0 })) {
    if (c.done) break;
    if (n++ === 0) ttft = performance.now() - t0;
  }
  return { ttft, total: performance.now() - t0, n };
}

// Warm-up.
for (let i = 0; i < 10; i++) {
  await baselineOnce();
  await sdkOnce();
}

const seq = { baseline: [], sdk: [] };
log(`sequential: ${SEQUENTIAL} each, interleaved`);
for (let i = 0; i < SEQUENTIAL; i++) {
  const [first, second] = i % 2 ? [sdkOnce, baselineOnce] : [baselineOnce, sdkOnce];
  const r1 = await first();
  const r2 = await second();
  (first === sdkOnce ? seq.sdk : seq.baseline).push(r1);
  (second === sdkOnce ? seq.sdk : seq.baseline).push(r2);
  if (r1.n !== TOKENS || r2.n !== TOKENS) throw new Error('short generation');
}

async function concurrent(fn) {
  const t0 = performance.now();
  const results = [];
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      for (let i = 0; i < CONCURRENT_PER_WORKER; i++) results.push(await fn());
    }),
  );
  const seconds = (performance.now() - t0) / 1000;
  return { results, tokensPerSecond: (results.length * TOKENS) / seconds };
}
log(`concurrent: ${CONCURRENCY} workers × ${CONCURRENT_PER_WORKER}`);
const cb1 = await concurrent(baselineOnce);
const cs1 = await concurrent(sdkOnce);
const cb2 = await concurrent(baselineOnce);
const cs2 = await concurrent(sdkOnce);
const cBase = (cb1.tokensPerSecond + cb2.tokensPerSecond) / 2;
const cSdk = (cs1.tokensPerSecond + cs2.tokensPerSecond) / 2;

sdk.close();
await agent.stop();
await coordinator.stop();
rmSync(dataDir, { recursive: true, force: true });

const f = (x) => x.toFixed(2);
const rows = [
  [
    'TTFT p50 (ms)',
    percentile(
      seq.baseline.map((r) => r.ttft),
      0.5,
    ),
    percentile(
      seq.sdk.map((r) => r.ttft),
      0.5,
    ),
  ],
  [
    'TTFT p95 (ms)',
    percentile(
      seq.baseline.map((r) => r.ttft),
      0.95,
    ),
    percentile(
      seq.sdk.map((r) => r.ttft),
      0.95,
    ),
  ],
  [
    `full ${TOKENS}-token generation p50 (ms)`,
    percentile(
      seq.baseline.map((r) => r.total),
      0.5,
    ),
    percentile(
      seq.sdk.map((r) => r.total),
      0.5,
    ),
  ],
  [
    `full ${TOKENS}-token generation p95 (ms)`,
    percentile(
      seq.baseline.map((r) => r.total),
      0.95,
    ),
    percentile(
      seq.sdk.map((r) => r.total),
      0.95,
    ),
  ],
];
const worst = Math.max(rows[0][2] / rows[0][1], rows[2][2] / rows[2][1], cBase / cSdk);
console.log(`## Client SDK overhead

Same generations (${TOKENS} tokens each ~1 ms apart, scripted engine, real coordinator + agent on 127.0.0.1) through
\`TitanClient.generate\` versus bare nice-grpc stubs (RequestInference + StreamInference on cached channels).
The agent advertises 1024 slots: at the time of writing the coordinator did not release reservations of finished jobs.
Sequential: ${SEQUENTIAL} each, interleaved; concurrent: ${CONCURRENCY} workers × ${CONCURRENT_PER_WORKER} each, twice per side.

| metric | baseline (bare stubs) | SDK | SDK / baseline |
|---|---|---|---|
${rows.map(([name, b, s]) => `| ${name} | ${f(b)} | ${f(s)} | ${f(s / b)}× |`).join('\n')}
| concurrent throughput (tokens/s, higher is better) | ${cBase.toFixed(0)} | ${cSdk.toFixed(0)} | ${f(cSdk / cBase)}× |

Verdict: ${worst <= 1.1 ? 'meets' : 'misses'} the target (SDK ≤ 1.10× baseline cost; worst ratio ${f(worst)}×).`);
process.exit(0);

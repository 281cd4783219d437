#!/usr/bin/env node
/**
 * Agent memory soak: SOAK_REQUESTS (default 20,000) short StreamInference requests through a real
 * agent over gRPC (bundled llama.cpp tiny model, small max_tokens, real session tokens verified and
 * recorded in the agent's data dir), RSS and heap used sampled every SOAK_SAMPLE_EVERY (1,000)
 * requests after a GC. Reports the slope in KB/request (least squares over the samples after the
 * warm-up sample). Prints one markdown section.
 *
 * Env: SOAK_REQUESTS, SOAK_SAMPLE_EVERY, SOAK_CONCURRENCY (4), SOAK_HEAP_SNAPSHOTS=<dir> (writes
 * heap snapshots after the warm-up and at the end, for diffing in Chrome DevTools; writing one
 * inflates RSS, so do not read the slope of such a run), SOAK_VARY_PROMPTS=1 (a different prompt
 * per request), SOAK_CHANNEL_PER_REQUEST=1 (a new gRPC connection per request, like CLI calls).
 * Run with --expose-gc for steadier samples (bench/run.mjs does).
 */
import { generateKeyPairSync, randomUUID, sign } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import v8 from 'node:v8';
import { createLog, importFromPackage } from './lib/index.mjs';

const niceGrpc = await importFromPackage('agent', 'nice-grpc');
const protocol = await import('@titancompute/protocol');
const { startAgent, createLlamaCppEngine, defaultLlamaThreads } = await import('@titancompute/agent');

const REQUESTS = Number(process.env.SOAK_REQUESTS ?? 20_000);
const SAMPLE_EVERY = Number(process.env.SOAK_SAMPLE_EVERY ?? 1000);
const CONCURRENCY = Number(process.env.SOAK_CONCURRENCY ?? 4);
const SNAPSHOTS = process.env.SOAK_HEAP_SNAPSHOTS;
const MAX_TOKENS = 4;
const MODEL = 'llama-2-tiny-random';
const AGENT_ID = 'soak-agent';
const PROMPT = 'Once upon a time';
const VARY_PROMPTS = process.env.SOAK_VARY_PROMPTS === '1';
const CHANNEL_PER_REQUEST = process.env.SOAK_CHANNEL_PER_REQUEST === '1';
const ACK_DELAY_MS = Number(process.env.SOAK_ACK_DELAY_MS ?? 100);
let maxCompletedPerUpdate = 0;
const log = createLog();

// ---- session tokens: the protocol's session-token contract, signed with node:crypto (Ed25519)
const { publicKey, privateKey } = generateKeyPairSync('ed25519');
const KID = 'soak-key';
const b64 = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
/** The engine parameters every request sends (and so every token grants). */
const PARAMETERS = { seed: '1' };
function token(prompt = PROMPT) {
  const now = Math.floor(Date.now() / 1000);
  const head = b64({ alg: protocol.SESSION_TOKEN_ALGORITHM, typ: protocol.SESSION_TOKEN_TYPE, kid: KID });
  const body = b64({
    ...protocol.sessionTokenPayload({
      agentId: AGENT_ID,
      clientId: 'soak',
      jobId: randomUUID(),
      model: MODEL,
      maxTokens: MAX_TOKENS,
      temperature: 0,
      parameters: PARAMETERS,
      prompt,
    }),
    iss: protocol.SESSION_TOKEN_ISSUER,
    aud: protocol.sessionTokenAudience(AGENT_ID),
    sub: 'soak',
    jti: randomUUID(),
    iat: now,
    nbf: now,
    exp: now + 300,
  });
  const sig = sign(null, Buffer.from(`${head}.${body}`), privateKey).toString('base64url');
  return `${head}.${body}.${sig}`;
}

// ---- a minimal CoordinatorService fake: registration, health acks, public key
const coordinator = niceGrpc.createServer();
coordinator.add(protocol.CoordinatorServiceDefinition, {
  async requestInference() {
    throw new niceGrpc.ServerError(niceGrpc.Status.UNIMPLEMENTED, 'bench');
  },
  async querySystemStatus() {
    return {};
  },
  async registerAgent() {
    return { status: 'registered', heartbeatIntervalSeconds: 1 };
  },
  // Each ack comes ACK_DELAY_MS after its update (updates are not serialised behind it), as from a
  // coordinator across a network: under load the next update leaves before the previous ack arrives.
  async *reportHealth(updates) {
    const acks = [];
    let wake;
    let ended = false;
    void (async () => {
      for await (const u of updates) {
        maxCompletedPerUpdate = Math.max(maxCompletedPerUpdate, u.completedJobs.length);
        setTimeout(() => {
          acks.push({ agentId: u.agentId, status: 'ok', echoTimestamp: u.timestamp });
          wake?.();
        }, ACK_DELAY_MS);
      }
      ended = true;
      wake?.();
    })().catch(() => {
      ended = true;
      wake?.();
    });
    for (;;) {
      if (acks.length > 0) {
        yield acks.shift();
        continue;
      }
      if (ended) return;
      await new Promise((r) => (wake = r));
      wake = undefined;
    }
  },
  async getPublicKey() {
    const pem = publicKey.export({ type: 'spki', format: 'pem' }).toString();
    return {
      publicKeyPem: pem,
      algorithm: 'EdDSA',
      issuer: 'titancompute-coordinator',
      keyId: KID,
      keys: [{ keyId: KID, publicKeyPem: pem, algorithm: 'EdDSA' }],
    };
  },
  async deregisterAgent() {
    return { status: 'deregistered' };
  },
});
const coordinatorPort = await coordinator.listen('127.0.0.1:0');

const dataDir = mkdtempSync(join(tmpdir(), 'titan-soak-'));
const engine = createLlamaCppEngine({ threads: defaultLlamaThreads(), sequences: CONCURRENCY });
const agent = await startAgent({
  agentId: AGENT_ID,
  host: '127.0.0.1',
  port: 0,
  coordinator: `127.0.0.1:${coordinatorPort}`,
  joinToken: 'soak-join',
  dataDir,
  engine,
  maxConcurrentJobs: CONCURRENCY,
  maxQueue: CONCURRENCY * 2,
  heartbeatIntervalMs: 1000,
  nvidiaSmiPath: '/nonexistent/nvidia-smi',
  logLevel: 'error',
});
const channel = niceGrpc.createChannel(`127.0.0.1:${agent.port}`);
const clientFactory = niceGrpc.createClientFactory().use(protocol.createProtoVersionClientMiddleware());
const client = clientFactory.create(protocol.AgentServiceDefinition, channel);

let failures = 0;
let n = 0;
async function one() {
  const prompt = VARY_PROMPTS ? `${PROMPT} ${++n} ${randomUUID()}` : PROMPT;
  const ch = CHANNEL_PER_REQUEST ? niceGrpc.createChannel(`127.0.0.1:${agent.port}`) : channel;
  const c = CHANNEL_PER_REQUEST ? clientFactory.create(protocol.AgentServiceDefinition, ch) : client;
  try {
    for await (const msg of c.streamInference({
      sessionToken: token(prompt),
      model: MODEL,
      prompt,
      maxTokens: MAX_TOKENS,
      temperature: 0,
      stream: true,
      options: PARAMETERS,
    })) {
      if (msg.done) break;
    }
  } catch (err) {
    if (++failures <= 5) log(`request failed: ${err.message}`);
  } finally {
    if (CHANNEL_PER_REQUEST) ch.close();
  }
}

const gc = globalThis.gc ?? (() => {});
const sample = (done) => {
  gc();
  const m = process.memoryUsage();
  return { done, rssKb: m.rss / 1024, heapKb: m.heapUsed / 1024 };
};
/** Least-squares slope of y over x. */
const slope = (pts, key) => {
  const n = pts.length;
  const mx = pts.reduce((s, p) => s + p.done, 0) / n;
  const my = pts.reduce((s, p) => s + p[key], 0) / n;
  const num = pts.reduce((s, p) => s + (p.done - mx) * (p[key] - my), 0);
  const den = pts.reduce((s, p) => s + (p.done - mx) ** 2, 0);
  return den === 0 ? 0 : num / den;
};

const samples = [sample(0)];
let issued = 0;
let done = 0;
const started = performance.now();
await Promise.all(
  Array.from({ length: CONCURRENCY }, async () => {
    while (issued < REQUESTS) {
      issued++;
      await one();
      done++;
      if (done % SAMPLE_EVERY === 0) {
        samples.push(sample(done));
        const s = samples.at(-1);
        log(
          `${done}/${REQUESTS}: rss ${(s.rssKb / 1024).toFixed(1)} MB, heap used ${(s.heapKb / 1024).toFixed(1)} MB, most outcomes in one health update ${maxCompletedPerUpdate}`,
        );
        if (SNAPSHOTS && done === SAMPLE_EVERY) log(`heap snapshot ${v8.writeHeapSnapshot(join(SNAPSHOTS, `soak-${done}.heapsnapshot`))}`);
      }
    }
  }),
);
const seconds = (performance.now() - started) / 1000;
if (SNAPSHOTS) log(`heap snapshot ${v8.writeHeapSnapshot(join(SNAPSHOTS, `soak-${done}.heapsnapshot`))}`);

channel.close();
await agent.stop('soak done');
coordinator.forceShutdown();
rmSync(dataDir, { recursive: true, force: true });

// Skip the warm-up: the first sample after start-up (model pages, JIT, pools) is not a leak.
const steady = samples.filter((s) => s.done >= SAMPLE_EVERY);
const rssSlope = slope(steady, 'rssKb');
const heapSlope = slope(steady, 'heapKb');
const first = steady[0];
const last = steady.at(-1);
const f = (n, d = 1) => n.toFixed(d);
console.log(`## Agent memory soak

${REQUESTS.toLocaleString('en-US')} short StreamInference requests (max_tokens ${MAX_TOKENS}, prompt ${JSON.stringify(PROMPT)}${VARY_PROMPTS ? ' + a unique suffix' : ''}, ${CONCURRENCY} at a time${CHANNEL_PER_REQUEST ? ', a new connection each' : ''})
through one real agent over gRPC on loopback: bundled tiny model on llama.cpp (${defaultLlamaThreads()} threads), every
request with its own session token, verified and recorded in the agent's data dir (SQLite); the fake coordinator acks each
health update ${ACK_DELAY_MS} ms late, as across a network (before the fix this made every update carry every finished job). RSS and V8 heap used
are sampled every ${SAMPLE_EVERY.toLocaleString('en-US')} requests after a full GC${globalThis.gc ? '' : ' (no --expose-gc: samples are noisier)'}; the slope is the least-squares fit over the
samples from request ${SAMPLE_EVERY.toLocaleString('en-US')} on (the first ${SAMPLE_EVERY.toLocaleString('en-US')} are warm-up). ${failures} request(s) failed; ${f(REQUESTS / seconds, 0)} requests/s.

| | at ${first.done.toLocaleString('en-US')} requests | at ${last.done.toLocaleString('en-US')} requests | slope |
|---|---|---|---|
| RSS | ${f(first.rssKb / 1024)} MB | ${f(last.rssKb / 1024)} MB | ${f(rssSlope, 3)} KB/request |
| V8 heap used | ${f(first.heapKb / 1024)} MB | ${f(last.heapKb / 1024)} MB | ${f(heapSlope, 3)} KB/request |

Samples (requests: RSS MB / heap MB): ${samples.map((s) => `${s.done}: ${f(s.rssKb / 1024)}/${f(s.heapKb / 1024)}`).join(', ')}.`);
process.exit(failures > REQUESTS / 100 ? 1 : 0);

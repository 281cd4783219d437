#!/usr/bin/env node
/**
 * Agent memory soak: SOAK_REQUESTS (default 20,000) short StreamInference requests from this
 * process to one agent in its own process (bundled llama.cpp tiny model, small max_tokens, real
 * session tokens verified and recorded in the agent's data dir), the agent's RSS and V8 heap used
 * sampled every SOAK_SAMPLE_EVERY (500) requests after a full GC in the agent process. Reports
 * the slope in KB/request (least squares, and Theil–Sen, the median of the pairwise slopes, which
 * one odd sample does not tilt) over the samples after the first 1,000 requests, and over the
 * second half. Prints one markdown section.
 *
 * The agent child is `startAgent` with the options the `titan-agent` bin would pass, run with
 * --expose-gc: on SIGUSR2 it collects garbage and prints `{"msg":"memory",...}`; on SIGUSR1 it
 * writes a heap snapshot into SOAK_HEAP_SNAPSHOTS (for diffing in Chrome DevTools; writing one
 * inflates RSS, so do not read the slope of such a run).
 *
 * Env: SOAK_REQUESTS, SOAK_SAMPLE_EVERY, SOAK_CONCURRENCY (4), SOAK_HEAP_SNAPSHOTS=<dir>,
 * SOAK_VARY_PROMPTS=1 (a different prompt per request), SOAK_CHANNEL_PER_REQUEST=1 (a new gRPC
 * connection per request, like CLI calls), SOAK_ACK_DELAY_MS (100: the fake coordinator's ack delay),
 * SOAK_MALLOC_ARENA_MAX (2, as the agent's Docker image sets it; 'default': glibc's own).
 */
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import v8 from 'node:v8';
import { createTokenSigner, startFakeCoordinator } from './lib/agent-fixtures.mjs';
import { createLog, importFromPackage, median, startListeningChild } from './lib/index.mjs';

const REQUESTS = Number(process.env.SOAK_REQUESTS ?? 20_000);
const SAMPLE_EVERY = Number(process.env.SOAK_SAMPLE_EVERY ?? 500);
const CONCURRENCY = Number(process.env.SOAK_CONCURRENCY ?? 4);
const SNAPSHOTS = process.env.SOAK_HEAP_SNAPSHOTS;
const MAX_TOKENS = 4;
const MODEL = 'llama-2-tiny-random';
const AGENT_ID = 'soak-agent';
const PROMPT = 'Once upon a time';
const VARY_PROMPTS = process.env.SOAK_VARY_PROMPTS === '1';
const CHANNEL_PER_REQUEST = process.env.SOAK_CHANNEL_PER_REQUEST === '1';
const ACK_DELAY_MS = Number(process.env.SOAK_ACK_DELAY_MS ?? 100);
/** glibc's malloc arenas in the agent process: 2 as the agent's Docker image sets it; 'default' leaves glibc's (8 × cores). */
const MALLOC_ARENAS = process.env.SOAK_MALLOC_ARENA_MAX ?? '2';

/** The agent child's environment: ours, with MALLOC_ARENA_MAX as MALLOC_ARENAS says. */
function agentEnv() {
  const env = { ...process.env };
  if (MALLOC_ARENAS === 'default') delete env.MALLOC_ARENA_MAX;
  else env.MALLOC_ARENA_MAX = MALLOC_ARENAS;
  return env;
}
/** The engine parameters every request sends (and so every token grants). */
const PARAMETERS = { seed: '1' };
const log = createLog('[agent-soak]');

// ---- child mode: the agent, in its own process
async function serveAgent() {
  const { startAgent, createLlamaCppEngine, defaultLlamaThreads } = await import('@titancompute/agent');
  const { exitWithParent } = await import('@titancompute/server-kit');
  if (process.env.TITAN_PARENT_PID) exitWithParent(Number(process.env.TITAN_PARENT_PID));
  const agent = await startAgent({
    agentId: AGENT_ID,
    host: '127.0.0.1',
    port: 0,
    httpPort: 0,
    coordinator: `127.0.0.1:${process.env.SOAK_COORDINATOR_PORT}`,
    joinToken: 'soak-join',
    dataDir: process.env.SOAK_DATA_DIR,
    engine: createLlamaCppEngine({ threads: defaultLlamaThreads(), sequences: CONCURRENCY }),
    maxConcurrentJobs: CONCURRENCY,
    maxQueue: CONCURRENCY * 2,
    heartbeatIntervalMs: 1000,
    nvidiaSmiPath: '/nonexistent/nvidia-smi',
    logLevel: 'error',
  });
  const say = (o) => process.stdout.write(`${JSON.stringify(o)}\n`);
  process.on('SIGUSR2', () => {
    globalThis.gc?.();
    globalThis.gc?.();
    const m = process.memoryUsage();
    say({ msg: 'memory', rss: m.rss, heapUsed: m.heapUsed, gc: Boolean(globalThis.gc) });
  });
  process.on('SIGUSR1', () => {
    if (SNAPSHOTS) say({ msg: 'snapshot', file: v8.writeHeapSnapshot(join(SNAPSHOTS, `soak-agent-${Date.now()}.heapsnapshot`)) });
  });
  process.on('SIGTERM', () => void agent.stop('soak done').finally(() => process.exit(0)));
  say({ msg: 'listening', port: agent.port });
}

async function main() {
  const niceGrpc = await importFromPackage('agent', 'nice-grpc');
  const protocol = await import('@titancompute/protocol');
  const signer = createTokenSigner({ agentId: AGENT_ID, keyId: 'soak-key' });
  // Each ack comes ACK_DELAY_MS after its update, as from a coordinator across a network: under
  // load the next update leaves before the previous ack arrives.
  const coordinator = await startFakeCoordinator({
    keyId: signer.keyId,
    publicKeyPem: signer.publicKeyPem,
    ackDelayMs: ACK_DELAY_MS,
    heartbeatIntervalSeconds: 1,
  });
  const dataDir = mkdtempSync(join(tmpdir(), 'titan-soak-'));
  const agentProc = await startListeningChild(['--expose-gc', fileURLToPath(import.meta.url), '--serve-agent'], {
    env: { ...agentEnv(), SOAK_COORDINATOR_PORT: String(coordinator.port), SOAK_DATA_DIR: dataDir },
    timeoutMs: 120_000,
  });
  const replies = [];
  let onReply;
  createInterface({ input: agentProc.child.stdout }).on('line', (line) => {
    let m;
    try {
      m = JSON.parse(line);
    } catch {
      return;
    }
    if (m.msg !== 'memory' && m.msg !== 'snapshot') return;
    replies.push(m);
    onReply?.();
  });
  const ask = async (signal) => {
    const before = replies.length;
    agentProc.child.kill(signal);
    while (replies.length === before) await new Promise((r) => (onReply = r));
    return replies.at(-1);
  };

  const channel = niceGrpc.createChannel(`127.0.0.1:${agentProc.port}`);
  const clientFactory = niceGrpc.createClientFactory().use(protocol.createProtoVersionClientMiddleware());
  const client = clientFactory.create(protocol.AgentServiceDefinition, channel);

  let failures = 0;
  let n = 0;
  async function one() {
    const prompt = VARY_PROMPTS ? `${PROMPT} ${++n} ${randomUUID()}` : PROMPT;
    const ch = CHANNEL_PER_REQUEST ? niceGrpc.createChannel(`127.0.0.1:${agentProc.port}`) : channel;
    const c = CHANNEL_PER_REQUEST ? clientFactory.create(protocol.AgentServiceDefinition, ch) : client;
    try {
      for await (const msg of c.streamInference({
        sessionToken: signer.token({ model: MODEL, maxTokens: MAX_TOKENS, temperature: 0, parameters: PARAMETERS, prompt }),
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

  const sample = async (done) => {
    const m = await ask('SIGUSR2');
    return { done, rssKb: m.rss / 1024, heapKb: m.heapUsed / 1024, gc: m.gc };
  };
  /** Theil–Sen slope of y over x: the median of the slopes between every two samples. */
  const robustSlope = (pts, key) => {
    const slopes = [];
    for (let i = 0; i < pts.length; i++) for (let j = i + 1; j < pts.length; j++) slopes.push((pts[j][key] - pts[i][key]) / (pts[j].done - pts[i].done));
    return median(slopes);
  };
  /** Least-squares slope of y over x. */
  const slope = (pts, key) => {
    const count = pts.length;
    const mx = pts.reduce((s, p) => s + p.done, 0) / count;
    const my = pts.reduce((s, p) => s + p[key], 0) / count;
    const num = pts.reduce((s, p) => s + (p.done - mx) * (p[key] - my), 0);
    const den = pts.reduce((s, p) => s + (p.done - mx) ** 2, 0);
    return den === 0 ? 0 : num / den;
  };

  const samples = [await sample(0)];
  let issued = 0;
  let done = 0;
  let sampling = Promise.resolve();
  const started = performance.now();
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (issued < REQUESTS) {
        issued++;
        await one();
        done++;
        if (done % SAMPLE_EVERY === 0) {
          const at = done;
          sampling = sampling.then(async () => {
            samples.push(await sample(at));
            const s = samples.at(-1);
            log(
              `${at}/${REQUESTS}: agent rss ${(s.rssKb / 1024).toFixed(1)} MB, heap used ${(s.heapKb / 1024).toFixed(1)} MB, most outcomes in one health update ${coordinator.maxCompletedPerUpdate()}`,
            );
            if (SNAPSHOTS && at === SAMPLE_EVERY) log(`heap snapshot ${(await ask('SIGUSR1')).file}`);
          });
        }
      }
    }),
  );
  await sampling;
  const seconds = (performance.now() - started) / 1000;
  if (SNAPSHOTS) log(`heap snapshot ${(await ask('SIGUSR1')).file}`);

  channel.close();
  await agentProc.stop();
  coordinator.stop();
  rmSync(dataDir, { recursive: true, force: true });

  // Skip the warm-up: the first 1,000 requests (model pages, JIT, pools) are not a leak.
  const WARM_UP = Math.max(SAMPLE_EVERY, 1000);
  const steady = samples.filter((s) => s.done >= WARM_UP);
  const rssSlope = slope(steady, 'rssKb');
  const heapSlope = slope(steady, 'heapKb');
  // The used-token store fills up to its live window (tokens expire 5 min after issue): over the
  // second half, growth that is only that warm-up is gone.
  const late = steady.filter((s) => s.done >= REQUESTS / 2);
  const lateRss = slope(late, 'rssKb');
  const lateHeap = slope(late, 'heapKb');
  const robust = {
    rss: robustSlope(steady, 'rssKb'),
    heap: robustSlope(steady, 'heapKb'),
    lateRss: robustSlope(late, 'rssKb'),
    lateHeap: robustSlope(late, 'heapKb'),
  };
  const first = steady[0];
  const last = steady.at(-1);
  const f = (x, d = 1) => x.toFixed(d);
  const gc = samples.every((s) => s.gc);
  console.log(`## Agent memory soak

Command: \`pnpm bench agent-soak\`. ${REQUESTS.toLocaleString('en-US')} short StreamInference requests (max_tokens ${MAX_TOKENS}, prompt ${JSON.stringify(PROMPT)}${VARY_PROMPTS ? ' + a unique suffix' : ''}, ${CONCURRENCY} at a time${CHANNEL_PER_REQUEST ? ', a new connection each' : ''})
from the bench process to one agent in its own process (\`startAgent\` with the bin's options: bundled tiny model on
llama.cpp, default threads; used tokens recorded in its data dir, SQLite; ${MALLOC_ARENAS === 'default' ? "glibc's default malloc arenas" : `\`MALLOC_ARENA_MAX=${MALLOC_ARENAS}\` as in the agent's Docker image`}), every request with its own session token; the
fake coordinator (in the bench process) acks each health update ${ACK_DELAY_MS} ms late, as across a network. The agent's RSS
and V8 heap used are sampled in the agent process every ${SAMPLE_EVERY.toLocaleString('en-US')} requests after a full GC${gc ? '' : ' (no --expose-gc: samples are noisier)'}; the slopes are
fitted over the samples from request ${WARM_UP.toLocaleString('en-US')} on (before: warm-up), by least squares and by Theil–Sen (the median of the slopes between
every two samples, which one odd sample does not tilt), and over the second half alone (by then the used-token store
holds its whole live window: tokens expire 5 minutes after they are issued). ${failures} request(s) failed; ${f(REQUESTS / seconds, 0)} requests/s (each done message waits for the late ack of its job's end).

| agent process | at ${first.done.toLocaleString('en-US')} requests | at ${last.done.toLocaleString('en-US')} requests | slope (least squares) | slope (Theil–Sen) | second half (least squares) | second half (Theil–Sen) |
|---|---|---|---|---|---|---|
| RSS | ${f(first.rssKb / 1024)} MB | ${f(last.rssKb / 1024)} MB | ${f(rssSlope, 3)} KB/request | ${f(robust.rss, 3)} KB/request | ${f(lateRss, 3)} KB/request | ${f(robust.lateRss, 3)} KB/request |
| V8 heap used | ${f(first.heapKb / 1024)} MB | ${f(last.heapKb / 1024)} MB | ${f(heapSlope, 3)} KB/request | ${f(robust.heap, 3)} KB/request | ${f(lateHeap, 3)} KB/request | ${f(robust.lateHeap, 3)} KB/request |

Samples (requests: RSS MB / heap MB): ${samples.map((s) => `${s.done}: ${f(s.rssKb / 1024)}/${f(s.heapKb / 1024)}`).join(', ')}.`);
  process.exit(failures > REQUESTS / 100 ? 1 : 0);
}

if (process.argv[2] === '--serve-agent') await serveAgent();
else await main();

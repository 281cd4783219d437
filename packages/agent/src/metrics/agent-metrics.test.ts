/**
 * The agent's Prometheus `/metrics` after real jobs through a real agent (startAgent with the
 * fake engine and the fake coordinator): HTTP and gRPC jobs alike are counted, with labels
 * `model` and `engine`.
 */
import { afterEach, beforeAll, describe, expect, it } from '@jest/globals';
import { startAgent, type RunningAgent, type StartAgentOptions } from '../agent.js';
import type { PrefixCacheState } from '../engines/engine.js';
import { collect, createAgentClient } from '../test-support/agent-client.js';
import { startFakeCoordinator } from '../test-support/fake-coordinator.js';
import { createFakeEngine, type FakeEngineOptions } from '../test-support/fake-engine.js';
import { createTestSigner, type TestSigner } from '../test-support/token-signer.js';
import { promptSha256 } from '../tokens/token-verifier.js';
import { createAgentMetrics } from './agent-metrics.js';

const MODEL = 'fake-model';
const TOKEN_DELAY_MS = 20;

let signer: TestSigner;
beforeAll(async () => {
  signer = await createTestSigner({ model: MODEL, temperature: 1, max_tokens: 4 });
});

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!();
});

async function start(agentId: string, engine: FakeEngineOptions, extra: Partial<StartAgentOptions> = {}): Promise<RunningAgent> {
  const coordinator = await startFakeCoordinator({ signers: [signer] });
  cleanups.push(() => coordinator.stop());
  const agent = await startAgent({
    agentId,
    host: '127.0.0.1',
    port: 0,
    coordinator: coordinator.address,
    joinToken: 'join-secret',
    engine: createFakeEngine({ models: [MODEL], promptTokens: 3, tokenDelayMs: TOKEN_DELAY_MS, ...engine }),
    heartbeatIntervalMs: 5000,
    nvidiaSmiPath: '/nonexistent/nvidia-smi',
    drainTimeoutMs: 1000,
    logLevel: 'silent',
    ...extra,
  });
  cleanups.push(() => agent.stop());
  await coordinator.waitFor(() => coordinator.registrations.length > 0);
  return agent;
}

/** The value of the sample `name` whose labels include `labels` (undefined when there is none). */
function sample(text: string, name: string, labels: Record<string, string>): number | undefined {
  for (const line of text.split('\n')) {
    const m = /^([^{\s]+)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const got = Object.fromEntries([...(m[2] ?? '').matchAll(/(\w+)="([^"]*)"/g)].map((x) => [x[1], x[2]]));
    if (Object.entries(labels).every(([k, v]) => got[k] === v)) return Number(m[3]);
  }
  return undefined;
}

const L = { model: MODEL, engine: 'fake' };

async function scrape(port: number): Promise<string> {
  const res = await fetch(`http://127.0.0.1:${port}/metrics`);
  expect(res.status).toBe(200);
  expect(res.headers.get('content-type')).toMatch(/^text\/plain/);
  return res.text();
}

/** Runs a 4-token generation over HTTP. */
async function httpJob(agent: RunningAgent, agentId: string, jobId: string, maxTokens = 4): Promise<Response> {
  const token = await signer.sign({ aud: agentId, job_id: jobId, max_tokens: maxTokens, prompt_sha256: promptSha256('Hi') });
  return fetch(`http://127.0.0.1:${agent.httpPort}/v1/completions?session_token=${token}`, {
    method: 'POST',
    body: JSON.stringify({ model: MODEL, prompt: 'Hi', max_tokens: maxTokens }),
  });
}

describe('agent /metrics', () => {
  it('counts an HTTP and a gRPC job: histograms of TTFT, inter-token latency, e2e and queue time, token counters, labelled model and engine', async () => {
    const agent = await start('metrics-agent', {});
    expect(agent.metricsPort).toBe(agent.httpPort);
    // Served models show before any job.
    const before = await scrape(agent.httpPort);
    expect(sample(before, 'titan_agent:prompt_tokens_total', L)).toBe(0);
    expect(sample(before, 'titan_agent:num_requests_running', L)).toBe(0);

    const res = await httpJob(agent, 'metrics-agent', 'job-http');
    expect(res.status).toBe(200);
    await res.text();
    const { client, channel } = createAgentClient(`127.0.0.1:${agent.port}`);
    try {
      const token = await signer.sign({ aud: 'metrics-agent', job_id: 'job-grpc', prompt_sha256: promptSha256('Hi') });
      await collect(client.streamInference({ sessionToken: token, model: MODEL, prompt: 'Hi', maxTokens: 0, temperature: 0, stream: true }));
    } finally {
      channel.close();
    }

    const text = await scrape(agent.httpPort);
    expect(sample(text, 'titan_agent:prompt_tokens_total', L)).toBe(6);
    expect(sample(text, 'titan_agent:generation_tokens_total', L)).toBe(8);
    for (const name of ['time_to_first_token_seconds', 'e2e_request_latency_seconds', 'request_queue_time_seconds']) {
      expect(sample(text, `titan_agent:${name}_count`, L)).toBe(2);
    }
    // Each token comes TOKEN_DELAY_MS after the last: the first after ≥ 20 ms, the whole job after ≥ 80 ms.
    expect(sample(text, 'titan_agent:time_to_first_token_seconds_bucket', { ...L, le: '0.01' })).toBe(0);
    expect(sample(text, 'titan_agent:time_to_first_token_seconds_bucket', { ...L, le: '+Inf' })).toBe(2);
    expect(sample(text, 'titan_agent:e2e_request_latency_seconds_bucket', { ...L, le: '0.05' })).toBe(0);
    expect(sample(text, 'titan_agent:e2e_request_latency_seconds_sum', L)).toBeGreaterThanOrEqual(0.16);
    // 4 tokens = 3 gaps per job, each ≥ 20 ms (seconds, not ms).
    expect(sample(text, 'titan_agent:inter_token_latency_seconds_count', L)).toBe(6);
    expect(sample(text, 'titan_agent:inter_token_latency_seconds_bucket', { ...L, le: '+Inf' })).toBe(6);
    expect(sample(text, 'titan_agent:inter_token_latency_seconds_bucket', { ...L, le: '0.01' })).toBe(0);
    expect(sample(text, 'titan_agent:inter_token_latency_seconds_bucket', { ...L, le: '80' })).toBe(6);
    const itlSum = sample(text, 'titan_agent:inter_token_latency_seconds_sum', L) ?? 0;
    expect(itlSum).toBeGreaterThanOrEqual(0.1);
    expect(itlSum).toBeLessThan(5);
    // Nothing queued: the queue time is below 10 ms.
    expect(sample(text, 'titan_agent:request_queue_time_seconds_bucket', { ...L, le: '0.01' })).toBe(2);
    expect(sample(text, 'titan_agent:num_requests_running', L)).toBe(0);
    expect(sample(text, 'titan_agent:num_requests_waiting', L)).toBe(0);
    expect(text).not.toMatch(/titan_agent:engine_errors_total\{/);
  });

  it('running and waiting gauges while a job queues behind another; its queue time is measured', async () => {
    const agent = await start('metrics-queue-agent', {}, { maxConcurrentJobs: 1, maxQueue: 1 });
    /** Scrapes until `ok` holds (a loaded machine may take a while to get each request in), up to 5 s. */
    const scrapeUntil = async (ok: (text: string) => boolean) => {
      const deadline = Date.now() + 5000;
      for (;;) {
        const text = await scrape(agent.httpPort);
        if (ok(text) || Date.now() > deadline) return text;
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
    };
    const first = httpJob(agent, 'metrics-queue-agent', 'job-1', 10);
    await scrapeUntil((t) => sample(t, 'titan_agent:num_requests_running', L) === 1);
    const second = httpJob(agent, 'metrics-queue-agent', 'job-2', 2);
    const during = await scrapeUntil((t) => sample(t, 'titan_agent:num_requests_waiting', L) === 1);
    expect(sample(during, 'titan_agent:num_requests_running', L)).toBe(1);
    expect(sample(during, 'titan_agent:num_requests_waiting', L)).toBe(1);
    await Promise.all([(await first).text(), (await second).text()]);
    const after = await scrape(agent.httpPort);
    expect(sample(after, 'titan_agent:num_requests_running', L)).toBe(0);
    expect(sample(after, 'titan_agent:num_requests_waiting', L)).toBe(0);
    expect(sample(after, 'titan_agent:request_queue_time_seconds_count', L)).toBe(2);
    // The second waited for the first's remaining tokens (well over 50 ms).
    expect(sample(after, 'titan_agent:request_queue_time_seconds_bucket', { ...L, le: '0.05' })).toBe(1);
  });

  it('--metrics-port: a listener of its own; engine errors counted by code', async () => {
    const agent = await start('metrics-port-agent', { failAfter: 1 }, { metricsPort: 0 });
    expect(agent.metricsPort).not.toBe(agent.httpPort);
    expect((await fetch(`http://127.0.0.1:${agent.httpPort}/metrics`)).status).toBe(404);
    const res = await httpJob(agent, 'metrics-port-agent', 'job-fail');
    await res.text();
    const text = await scrape(agent.metricsPort);
    expect(sample(text, 'titan_agent:engine_errors_total', { ...L, code: 'engine_error' })).toBe(1);
    expect(sample(text, 'titan_agent:e2e_request_latency_seconds_count', L)).toBe(0);
    expect(sample(text, 'titan_agent:time_to_first_token_seconds_count', L)).toBe(0);
    expect(sample(text, 'titan_agent:num_requests_running', L)).toBe(0);
  });
});

describe('createAgentMetrics', () => {
  it('a piece of n tokens counts n inter-token gaps of its time / n', async () => {
    const metrics = createAgentMetrics({ engine: 'e', models: ['m'] });
    metrics.model('m').interToken(0.3, 3);
    metrics.model('m').interToken(0.002, 1);
    const text = await metrics.prometheus.metrics();
    const l = { model: 'm', engine: 'e' };
    expect(sample(text, 'titan_agent:inter_token_latency_seconds_bucket', { ...l, le: '0.0025' })).toBe(1);
    expect(sample(text, 'titan_agent:inter_token_latency_seconds_bucket', { ...l, le: '0.075' })).toBe(1);
    expect(sample(text, 'titan_agent:inter_token_latency_seconds_bucket', { ...l, le: '0.1' })).toBe(4);
    expect(sample(text, 'titan_agent:inter_token_latency_seconds_count', l)).toBe(4);
    expect(sample(text, 'titan_agent:inter_token_latency_seconds_sum', l)).toBeCloseTo(0.302);
  });

  it("exposes the engine's prefix-cache counts (prompt tokens looked up / found) and KV usage, read at each scrape", async () => {
    const state: PrefixCacheState = {
      version: 1,
      blockHashes: [],
      usedCells: 1024,
      totalCells: 4096,
      usedSequences: 1,
      totalSequences: 2,
      counts: [{ model: 'm', queryTokens: 1500, hitTokens: 1200 }],
    };
    const metrics = createAgentMetrics({ engine: 'llama-cpp', models: ['m'], prefixCache: () => state });
    const l = { model: 'm', engine: 'llama-cpp' };
    let text = await metrics.prometheus.metrics();
    expect(text).toContain('# TYPE titan_agent:prefix_cache_queries_total counter');
    expect(sample(text, 'titan_agent:prefix_cache_queries_total', l)).toBe(1500);
    expect(sample(text, 'titan_agent:prefix_cache_hits_total', l)).toBe(1200);
    expect(sample(text, 'titan_agent:kv_cache_usage_perc', { engine: 'llama-cpp' })).toBe(0.25);
    state.counts = [{ model: 'm', queryTokens: 3000, hitTokens: 2700 }];
    text = await metrics.prometheus.metrics();
    expect(sample(text, 'titan_agent:prefix_cache_hits_total', l)).toBe(2700);
    // An engine without a prefix cache has none of these series.
    const plain = await createAgentMetrics({ engine: 'ollama', models: ['m'] }).prometheus.metrics();
    expect(plain).not.toContain('prefix_cache');
  });
});

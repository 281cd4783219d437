import { Counter, Gauge, Registry } from 'prom-client';
import type { PrefixCacheState } from '../engines/engine.js';

/** Buckets (seconds) of time to first token, as vLLM's `vllm:time_to_first_token_seconds`. */
const TTFT_BUCKETS = [0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10, 20, 40, 80];
/** Buckets (seconds) of inter-token latency, as vLLM's `vllm:inter_token_latency_seconds`. */
const ITL_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1, 2.5, 5, 7.5, 10, 20, 40, 80];
/** Buckets (seconds) of end-to-end latency and queue time, as vLLM's request latency histograms. */
const REQUEST_BUCKETS = [0.01, 0.05, 0.1, 0.3, 0.5, 0.8, 1, 2.5, 5, 10, 15, 20, 30, 40, 50, 60, 120, 240, 480, 960];

/**
 * The measures of one model's jobs, bound once per model so that a job records without hashing
 * labels. Times are seconds.
 */
export interface ModelMetrics {
  /** A job was admitted and waits for a slot. */
  queued(): void;
  /** A queued job got its slot after waiting `seconds` (`request_queue_time_seconds`). */
  started(seconds: number): void;
  /**
   * One streamed piece of `tokens` tokens came `seconds` after the previous one: counted as
   * `tokens` inter-token gaps of `seconds / tokens` each (no allocation: called per piece).
   */
  interToken(seconds: number, tokens: number): void;
  /**
   * A job ended. `ran`: it had a slot (else it left the queue). Its tokens are counted; a
   * generation that produced a token records its time to first token (from admission), and a
   * job that ran without error its end-to-end latency.
   */
  ended(end: { ran: boolean; promptTokens: number; generationTokens: number; ttftSeconds?: number | undefined; e2eSeconds?: number | undefined }): void;
  /** The engine failed a job (error code such as `engine_error`, `engine_unavailable`). */
  engineError(code: string): void;
}

/** The agent's Prometheus metrics (`GET /metrics`), in vLLM's style, labelled by `model` and `engine`. */
export interface AgentMetrics {
  /** The registry `/metrics` serves (one per agent, so several agents can run in a process). */
  readonly prometheus: Registry;
  /** The measures of `model`'s jobs (cached: call it once per job). */
  model(model: string): ModelMetrics;
}

/**
 * A histogram whose observations are plain array updates (no label validation or hashing, no
 * allocation), for what the job path observes (every piece's inter-token latency, every job's
 * TTFT, queue time and latency); read by the registry as prom-client reads its own, with the
 * same samples and labels (`le`, `model`, `engine`). `observe(seconds, n)` counts n observations
 * of seconds / n each.
 */
function createPlainHistogram(name: string, help: string, buckets: readonly number[], engine: string, prometheus: Registry) {
  const series = new Map<string, { counts: Float64Array; sum: number; count: number }>();
  prometheus.registerMetric({
    name,
    help,
    type: 'histogram',
    aggregator: 'sum',
    get: () => {
      const values: { metricName: string; labels: Record<string, string | number>; value: number }[] = [];
      for (const [model, s] of series) {
        let cumulative = 0;
        buckets.forEach((le, i) => {
          cumulative += s.counts[i] ?? 0;
          values.push({ metricName: `${name}_bucket`, labels: { le, model, engine }, value: cumulative });
        });
        values.push({ metricName: `${name}_bucket`, labels: { le: '+Inf', model, engine }, value: s.count });
        values.push({ metricName: `${name}_sum`, labels: { model, engine }, value: s.sum });
        values.push({ metricName: `${name}_count`, labels: { model, engine }, value: s.count });
      }
      return { name, help, type: 'histogram', aggregator: 'sum', values };
    },
  } as unknown as Parameters<Registry['registerMetric']>[0]);
  return (model: string) => {
    const s = { counts: new Float64Array(buckets.length), sum: 0, count: 0 };
    series.set(model, s);
    return (seconds: number, n: number) => {
      const each = seconds / n;
      let i = 0;
      while (i < buckets.length && each > (buckets[i] as number)) i++;
      if (i < buckets.length) s.counts[i] = (s.counts[i] ?? 0) + n;
      s.sum += seconds;
      s.count += n;
    };
  };
}

/**
 * A counter per model whose increments are plain additions (no label hashing), for the tokens
 * every job counts; read by the registry as a prom-client counter (`model` and `engine` labels).
 */
function createPlainCounter(name: string, help: string, engine: string, prometheus: Registry) {
  const series = new Map<string, { value: number }>();
  registerReadMetric(prometheus, { name, help, type: 'counter' }, () => [...series].map(([model, s]) => ({ labels: { model, engine }, value: s.value })));
  return (model: string) => {
    const s = { value: 0 };
    series.set(model, s);
    return (n: number) => {
      s.value += n;
    };
  };
}

/** Options of {@link createAgentMetrics}. */
export interface AgentMetricsOptions {
  engine: string;
  /** Models shown from the first scrape (zero counts). */
  models?: readonly string[];
  /**
   * The engine's prefix cache (`Engine.prefixCache`), read at each scrape: its counts become
   * `titan_agent:prefix_cache_queries_total` / `titan_agent:prefix_cache_hits_total` (prompt
   * tokens, per model) and its cells `titan_agent:kv_cache_usage_perc`. Absent for engines without one.
   */
  prefixCache?: () => PrefixCacheState | undefined;
}

/** Registers a series read from `read` at each scrape (prom-client's own collect cannot set a counter). */
function registerReadMetric(
  prometheus: Registry,
  spec: { name: string; help: string; type: 'counter' | 'gauge' },
  read: () => { labels: Record<string, string>; value: number }[],
): void {
  prometheus.registerMetric({
    ...spec,
    aggregator: 'sum',
    get: () => ({ ...spec, aggregator: 'sum', values: read() }),
  } as unknown as Parameters<Registry['registerMetric']>[0]);
}

/**
 * Creates the agent's metrics for an engine. Names follow vLLM's (`vllm:` → `titan_agent:`), see
 * the agent README for the mapping to vLLM's and the inference gateway's:
 * `titan_agent:time_to_first_token_seconds`, `titan_agent:inter_token_latency_seconds`,
 * `titan_agent:e2e_request_latency_seconds`, `titan_agent:request_queue_time_seconds`
 * (histograms), `titan_agent:prompt_tokens_total`, `titan_agent:generation_tokens_total`,
 * `titan_agent:engine_errors_total{code}` (counters), `titan_agent:num_requests_running`,
 * `titan_agent:num_requests_waiting` (gauges); every series has `model` and `engine`. With an
 * engine's prefix cache (llama-cpp): `titan_agent:prefix_cache_queries_total` and
 * `titan_agent:prefix_cache_hits_total` (prompt tokens looked up / found, as vLLM's
 * `vllm:prefix_cache_queries` / `vllm:prefix_cache_hits`: hit ratio = hits / queries) and
 * `titan_agent:kv_cache_usage_perc` (share of KV cells in use, 0–1; `engine` label only).
 *
 * @example
 * ```ts
 * const metrics = createAgentMetrics({ engine: 'llama-cpp', models: ['tiny'] });
 * const m = metrics.model('tiny');
 * m.queued(); m.started(0.002); m.ended({ ran: true, promptTokens: 5, generationTokens: 16, ttftSeconds: 0.05, e2eSeconds: 0.4 });
 * console.log(await metrics.prometheus.metrics());
 * ```
 */
export function createAgentMetrics(options: AgentMetricsOptions): AgentMetrics {
  const { engine } = options;
  const prometheus = new Registry();
  const labelNames = ['model', 'engine'] as const;
  // What every job (and every piece) records is kept in plain per-model arrays and numbers: a
  // prom-client child validates and hashes its labels on every observation.
  const histogram = (name: string, help: string, buckets: readonly number[]) => createPlainHistogram(name, help, buckets, engine, prometheus);
  const ttft = histogram('titan_agent:time_to_first_token_seconds', 'Time from admission to the first generated token.', TTFT_BUCKETS);
  const itl = histogram(
    'titan_agent:inter_token_latency_seconds',
    'Time between generated tokens (a piece of n tokens counts n gaps of its time / n).',
    ITL_BUCKETS,
  );
  const e2e = histogram('titan_agent:e2e_request_latency_seconds', 'Time from admission to the end of a job that ran without error.', REQUEST_BUCKETS);
  const queueTime = histogram('titan_agent:request_queue_time_seconds', 'Time a job waited for a slot.', REQUEST_BUCKETS);
  const promptTokens = createPlainCounter('titan_agent:prompt_tokens_total', 'Prompt tokens processed.', engine, prometheus);
  const generationTokens = createPlainCounter('titan_agent:generation_tokens_total', 'Tokens generated.', engine, prometheus);
  const errors = new Counter({
    name: 'titan_agent:engine_errors_total',
    help: 'Jobs the engine failed, by error code.',
    labelNames: [...labelNames, 'code'],
    registers: [prometheus],
  });
  const load = new Map<string, { running: number; waiting: number }>();
  const gauge = (name: string, help: string, read: (l: { running: number; waiting: number }) => number) =>
    new Gauge({
      name,
      help,
      labelNames,
      registers: [prometheus],
      collect() {
        for (const [model, l] of load) this.set({ model, engine }, read(l));
      },
    });
  gauge('titan_agent:num_requests_running', 'Jobs running (holding a slot).', (l) => l.running);
  gauge('titan_agent:num_requests_waiting', 'Jobs queued for a slot.', (l) => l.waiting);
  const { prefixCache } = options;
  if (prefixCache) {
    const counts = (key: 'queryTokens' | 'hitTokens') => () =>
      (prefixCache()?.counts ?? []).map((c) => ({ labels: { model: c.model, engine }, value: c[key] }));
    registerReadMetric(
      prometheus,
      { name: 'titan_agent:prefix_cache_queries_total', help: 'Prompt tokens looked up in the prefix (KV) cache.', type: 'counter' },
      counts('queryTokens'),
    );
    registerReadMetric(
      prometheus,
      { name: 'titan_agent:prefix_cache_hits_total', help: 'Prompt tokens found in the prefix (KV) cache (not evaluated again).', type: 'counter' },
      counts('hitTokens'),
    );
    registerReadMetric(prometheus, { name: 'titan_agent:kv_cache_usage_perc', help: 'Share of KV cache cells in use (0-1).', type: 'gauge' }, () => {
      const state = prefixCache();
      return state && state.totalCells > 0 ? [{ labels: { engine }, value: state.usedCells / state.totalCells }] : [];
    });
  }

  const cache = new Map<string, ModelMetrics>();
  const bind = (model: string): ModelMetrics => {
    const l = { running: 0, waiting: 0 };
    load.set(model, l);
    // Every series shows from the first scrape (zero counts).
    const children = {
      ttft: ttft(model),
      e2e: e2e(model),
      queueTime: queueTime(model),
      promptTokens: promptTokens(model),
      generationTokens: generationTokens(model),
    };
    const interToken = itl(model);
    return {
      queued() {
        l.waiting += 1;
      },
      started(seconds) {
        l.waiting -= 1;
        l.running += 1;
        children.queueTime(seconds, 1);
      },
      interToken,
      ended(end) {
        if (end.ran) l.running -= 1;
        else l.waiting -= 1;
        if (end.promptTokens > 0) children.promptTokens(end.promptTokens);
        if (end.generationTokens > 0) children.generationTokens(end.generationTokens);
        if (end.ttftSeconds !== undefined) children.ttft(end.ttftSeconds, 1);
        if (end.e2eSeconds !== undefined) children.e2e(end.e2eSeconds, 1);
      },
      engineError(code) {
        errors.inc({ model, engine, code });
      },
    };
  };
  const model = (name: string): ModelMetrics => {
    let m = cache.get(name);
    if (!m) {
      m = bind(name);
      cache.set(name, m);
    }
    return m;
  };
  // Every served model shows from the first scrape (zero counts), not only after its first job.
  for (const name of options.models ?? []) model(name);
  return { prometheus, model };
}

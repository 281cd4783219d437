/**
 * OpenTelemetry end to end, across real processes: the built coordinator and agent bins (embedded
 * llama.cpp, bundled model) and the `titan` CLI, each with `OTEL_EXPORTER_OTLP_ENDPOINT` pointing
 * at an in-process OTLP/JSON receiver. One `titan generate` is one trace over three services;
 * without the variable nothing is exported and the SDK is not even loaded.
 */
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { startOtlpReceiver, type OtlpReceiver, type ReceivedSpan } from '@titancompute/test-support/otlp-receiver';
import { startCluster, waitForAgents } from '../scripts/lib/launch.mjs';
import { MODEL, repoRoot, runTitan, tempDir, type Cluster } from './support.js';

const PROMPT = 'Tell me the secret 5e1d9b';
const SERVER = 2;
const CLIENT = 3;
const AGENT_SPANS = ['titan.queue_wait', 'titan.prompt_evaluation', 'titan.generation'] as const;

/** The one span of `service` named `name`; fails unless there is exactly one. */
function one(spans: ReceivedSpan[], service: string, name: string): ReceivedSpan {
  const found = spans.filter((s) => s.serviceName === service && s.name === name);
  expect(found.map((s) => `${s.serviceName}:${s.name}`)).toEqual([`${service}:${name}`]);
  return found[0]!;
}

describe('tracing on: OTEL_EXPORTER_OTLP_ENDPOINT set for every process', () => {
  let receiver: OtlpReceiver;
  let cluster: Cluster;
  beforeAll(async () => {
    receiver = await startOtlpReceiver();
    cluster = await startCluster({
      dataDir: tempDir('tracing-on'),
      agents: 1,
      env: { OTEL_EXPORTER_OTLP_ENDPOINT: receiver.endpoint, OTEL_BSP_SCHEDULE_DELAY: '100' },
    });
    await waitForAgents(cluster.coordinator.address, 1);
  }, 90_000);
  afterAll(async () => {
    await cluster?.stop();
    await receiver?.close();
  }, 30_000);

  it('titan generate is one trace: CLI span → RequestInference → {schedule, sign}, and → StreamInference → {queue, prompt evaluation, generation}', async () => {
    const result = await runTitan(['generate', '--json', '--coordinator', cluster.coordinator.address, '--model', MODEL, '--max-tokens', '6', PROMPT], {
      OTEL_EXPORTER_OTLP_ENDPOINT: receiver.endpoint,
    });
    expect(result.code).toBe(0);
    const { jobId } = (JSON.parse(result.stdout) as { stats: { jobId: string } }).stats;
    const spans = await receiver.waitForSpans(
      (s) =>
        ['titan.generate', 'titan.schedule', 'titan.sign_token', 'titancompute.v1.AgentService/StreamInference', ...AGENT_SPANS].every((n) =>
          s.some((x) => x.name === n),
        ),
      20_000,
    );
    expect(new Set(spans.map((s) => s.traceId)).size).toBe(1);

    // The CLI's span is the root (it exported before exiting).
    const root = one(spans, 'titan-cli', 'titan.generate');
    expect(root).toMatchObject({ parentSpanId: undefined, kind: CLIENT });
    expect(root.attributes).toMatchObject({
      'gen_ai.request.model': MODEL,
      'gen_ai.usage.output_tokens': 6,
      'titan.agent.id': 'agent-1',
      'titan.job.id': jobId,
    });

    const request = one(spans, 'titan-coordinator', 'titancompute.v1.CoordinatorService/RequestInference');
    expect(request).toMatchObject({
      parentSpanId: root.spanId,
      kind: SERVER,
      attributes: { 'rpc.system': 'grpc', 'rpc.grpc.status_code': 0, 'titan.job.id': jobId },
    });
    for (const name of ['titan.schedule', 'titan.sign_token']) expect(one(spans, 'titan-coordinator', name).parentSpanId).toBe(request.spanId);

    const stream = one(spans, 'titan-agent', 'titancompute.v1.AgentService/StreamInference');
    expect(stream).toMatchObject({
      parentSpanId: root.spanId,
      kind: SERVER,
      attributes: {
        'rpc.method': 'StreamInference',
        'rpc.grpc.status_code': 0,
        'titan.agent.id': 'agent-1',
        'titan.job.id': jobId,
        'gen_ai.usage.output_tokens': 6,
      },
    });
    expect(stream.attributes['gen_ai.usage.input_tokens']).toBeGreaterThan(0);
    for (const name of AGENT_SPANS) expect(one(spans, 'titan-agent', name).parentSpanId).toBe(stream.spanId);

    for (const service of [cluster.coordinator, ...cluster.agents]) {
      expect(service.logs.some((l) => (l as { msg?: string }).msg === 'tracing: exporting spans (OTLP)')).toBe(true);
    }

    // Only ids, counts and names leave the processes: not the prompt.
    const exported = receiver.bodies().join('\n');
    expect(exported).not.toContain('secret 5e1d9b');
    expect(exported).not.toContain(PROMPT);
  }, 60_000);
});

describe('tracing off: no OTLP endpoint in the environment', () => {
  let receiver: OtlpReceiver;
  let cluster: Cluster;
  beforeAll(async () => {
    receiver = await startOtlpReceiver();
    cluster = await startCluster({ dataDir: tempDir('tracing-off'), agents: 1 });
    await waitForAgents(cluster.coordinator.address, 1);
  }, 90_000);
  afterAll(async () => {
    await cluster?.stop();
    await receiver?.close();
  }, 30_000);

  it('a generation exports nothing, and the services log no tracing', async () => {
    const result = await runTitan(['generate', '--coordinator', cluster.coordinator.address, '--model', MODEL, '--max-tokens', '4', PROMPT]);
    expect(result.code).toBe(0);
    // Stopping flushes whatever a service buffered: nothing, as nothing was traced.
    await cluster.stop();
    expect(receiver.bodies()).toEqual([]);
    for (const service of [cluster.coordinator, ...cluster.agents])
      expect(service.logs.some((l) => String((l as { msg?: string }).msg).startsWith('tracing'))).toBe(false);
  }, 60_000);

  it('startTracing loads the OpenTelemetry SDK only when an endpoint is set', async () => {
    const probe = `
      import { createRequire } from 'node:module';
      const { startTracing } = await import(${JSON.stringify(join(repoRoot, 'packages/server-kit/dist/index.js'))});
      const tracing = await startTracing({ serviceName: 'probe' });
      const loaded = Object.keys(createRequire(process.cwd() + '/').cache).filter((p) => /@opentelemetry[+/](sdk-trace|exporter-trace|resources)/.test(p));
      await tracing.shutdown();
      console.log(JSON.stringify({ enabled: tracing.enabled, loaded: loaded.length }));
    `;
    const run = async (env: Record<string, string>) => {
      const clean = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('OTEL_')));
      const { stdout } = await promisify(execFile)(process.execPath, ['--input-type=module', '-e', probe], { cwd: repoRoot, env: { ...clean, ...env } });
      return JSON.parse(stdout.trim()) as { enabled: boolean; loaded: number };
    };
    expect(await run({})).toEqual({ enabled: false, loaded: 0 });
    // The probe can see the SDK when it is there: with an endpoint it is loaded.
    const on = await run({ OTEL_EXPORTER_OTLP_ENDPOINT: receiver.endpoint });
    expect(on.enabled).toBe(true);
    expect(on.loaded).toBeGreaterThan(0);
  }, 30_000);
});

/**
 * OpenTelemetry across a real in-process cluster (coordinator, agent, SDK client), exported over
 * OTLP/JSON to an in-process receiver: one trace per request, the spans nested as documented,
 * no prompt or generated text in what leaves. All three share this process's tracer provider
 * (the e2e test `e2e/tracing.test.ts` runs them as separate processes).
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from '@jest/globals';
import { Status } from 'nice-grpc-common';
import { startTracing, type Tracing } from '@titancompute/server-kit';
import { SCRIPTED_MODEL, startOtlpReceiver, startRealCluster, type OtlpReceiver, type RealCluster, type ReceivedSpan } from '@titancompute/test-support';

const PROMPT = 'the secret prompt 7f3a9c';
const SERVER = 2;
const CLIENT = 3;

let receiver: OtlpReceiver;
let tracing: Tracing;
let cluster: RealCluster;
beforeAll(async () => {
  receiver = await startOtlpReceiver();
  tracing = await startTracing({ serviceName: 'titan-test', env: { OTEL_EXPORTER_OTLP_ENDPOINT: receiver.endpoint, OTEL_BSP_SCHEDULE_DELAY: '20' } });
  cluster = await startRealCluster([{ agentId: 'agent-a' }]);
}, 60_000);
afterAll(async () => {
  await cluster?.stop();
  await tracing?.shutdown();
  await receiver?.close();
});
afterEach(() => receiver.clear());

/** The one span named `name` (optionally also matching `where`); fails when there is not exactly one. */
function one(spans: ReceivedSpan[], name: string, where: (s: ReceivedSpan) => boolean = () => true): ReceivedSpan {
  const found = spans.filter((s) => s.name === name && where(s));
  expect(found.map((s) => s.name)).toEqual([name]);
  return found[0]!;
}

/** Waits until every span in `names` (counted) has arrived. */
const arrived = (names: string[]) => (spans: ReceivedSpan[]) =>
  names.every((n) => spans.filter((s) => s.name === n).length >= names.filter((m) => m === n).length);

const AGENT_SPANS = ['titan.queue_wait', 'titan.prompt_evaluation', 'titan.generation'];

/** `later` starts no earlier than `earlier` ends (the SDK stamps a span's start to the millisecond: 1 ms of slack). */
function startsAfter(later: ReceivedSpan, earlier: ReceivedSpan): void {
  expect(later.startTimeUnixNano + 1_000_000n).toBeGreaterThanOrEqual(earlier.endTimeUnixNano);
}

describe('tracing a generation through the SDK (gRPC)', () => {
  it('one trace: client span → RequestInference → {schedule, sign}, and → StreamInference → {queue, prompt evaluation, generation}', async () => {
    const { stats } = await cluster.client.complete({ model: SCRIPTED_MODEL, prompt: PROMPT, maxTokens: 5 });
    const spans = await receiver.waitForSpans(
      arrived([
        'titan.generate',
        'titancompute.v1.CoordinatorService/RequestInference',
        'titan.schedule',
        'titan.sign_token',
        'titancompute.v1.AgentService/StreamInference',
        ...AGENT_SPANS,
      ]),
    );
    expect(new Set(spans.map((s) => s.traceId)).size).toBe(1);
    const root = one(spans, 'titan.generate');
    expect(root).toMatchObject({ parentSpanId: undefined, kind: CLIENT, serviceName: 'titan-test', statusCode: 0 });
    expect(root.attributes).toMatchObject({
      'gen_ai.operation.name': 'text_completion',
      'gen_ai.request.model': SCRIPTED_MODEL,
      'gen_ai.request.max_tokens': 5,
      'gen_ai.usage.output_tokens': 5,
      'gen_ai.response.finish_reasons': ['length'],
      'titan.client.id': cluster.client.clientId,
      'titan.agent.id': 'agent-a',
      'titan.job.id': stats.jobId,
      'titan.attempts': 1,
    });
    expect(typeof root.attributes['gen_ai.usage.input_tokens']).toBe('number');

    const request = one(spans, 'titancompute.v1.CoordinatorService/RequestInference');
    expect(request).toMatchObject({ parentSpanId: root.spanId, kind: SERVER, statusCode: 0 });
    expect(request.attributes).toMatchObject({
      'rpc.system': 'grpc',
      'rpc.service': 'titancompute.v1.CoordinatorService',
      'rpc.method': 'RequestInference',
      'rpc.grpc.status_code': 0,
      'gen_ai.request.model': SCRIPTED_MODEL,
      'titan.client.id': cluster.client.clientId,
      'titan.agent.id': 'agent-a',
      'titan.job.id': stats.jobId,
    });
    const schedule = one(spans, 'titan.schedule');
    expect(schedule).toMatchObject({
      parentSpanId: request.spanId,
      attributes: { 'titan.schedule.outcome': 'scheduled', 'titan.agent.id': 'agent-a', 'titan.job.id': stats.jobId },
    });
    const sign = one(spans, 'titan.sign_token');
    expect(sign).toMatchObject({ parentSpanId: request.spanId, attributes: { 'titan.job.id': stats.jobId } });
    startsAfter(sign, schedule);

    const stream = one(spans, 'titancompute.v1.AgentService/StreamInference');
    expect(stream).toMatchObject({ parentSpanId: root.spanId, kind: SERVER, statusCode: 0 });
    expect(stream.attributes).toMatchObject({
      'rpc.system': 'grpc',
      'rpc.service': 'titancompute.v1.AgentService',
      'rpc.method': 'StreamInference',
      'rpc.grpc.status_code': 0,
      'titan.agent.id': 'agent-a',
      'titan.job.id': stats.jobId,
      'titan.client.id': cluster.client.clientId,
      'gen_ai.request.model': SCRIPTED_MODEL,
      'gen_ai.usage.output_tokens': 5,
    });
    const [queue, prompt, generation] = AGENT_SPANS.map((name) => one(spans, name));
    for (const span of [queue!, prompt!, generation!]) expect(span).toMatchObject({ parentSpanId: stream.spanId, attributes: { 'titan.job.id': stats.jobId } });
    // In order: the slot, then the prompt until the first token, then the rest of the tokens.
    startsAfter(prompt!, queue!);
    startsAfter(generation!, prompt!);
    expect(generation!.attributes).toMatchObject({ 'gen_ai.usage.output_tokens': 5, 'gen_ai.response.finish_reasons': ['length'] });
    // The request came before the stream, both inside the client's span.
    startsAfter(stream, request);
    expect(root.endTimeUnixNano + 1_000_000n).toBeGreaterThanOrEqual(stream.endTimeUnixNano);

    // Neither the prompt nor a generated token is exported.
    const exported = receiver.bodies().join('\n');
    expect(exported).not.toContain('secret prompt');
    expect(exported).not.toContain('word0');
  });

  it('a chat is its own trace (titan.chat), and a refused request marks the spans failed', async () => {
    await cluster.client.complete({ model: SCRIPTED_MODEL, prompt: 'x', maxTokens: 1 });
    for await (const _ of cluster.client.chat({ model: SCRIPTED_MODEL, messages: [{ role: 'user', content: PROMPT }], maxTokens: 2 })) {
      // drain
    }
    await expect(cluster.client.complete({ model: 'no-such-model', prompt: PROMPT, maxTokens: 1 })).rejects.toMatchObject({ name: 'NoAgentsError' });
    const spans = await receiver.waitForSpans((s) => s.filter((x) => x.name.startsWith('titan.') && x.parentSpanId === undefined).length >= 3);
    const roots = spans.filter((s) => s.parentSpanId === undefined);
    expect(roots.map((s) => s.name).sort()).toEqual(['titan.chat', 'titan.generate', 'titan.generate']);
    expect(new Set(roots.map((s) => s.traceId)).size).toBe(3);
    const chat = one(roots, 'titan.chat');
    expect(chat.attributes['gen_ai.operation.name']).toBe('chat');

    const failed = one(roots, 'titan.generate', (s) => s.attributes['gen_ai.request.model'] === 'no-such-model');
    expect(failed).toMatchObject({ statusCode: 2, attributes: { 'error.type': 'NoAgentsError' } });
    const refused = await receiver.waitForSpans((s) => s.some((x) => x.traceId === failed.traceId && x.name === 'titan.schedule'));
    const request = one(refused, 'titancompute.v1.CoordinatorService/RequestInference', (s) => s.traceId === failed.traceId);
    expect(request.parentSpanId).toBe(failed.spanId);
    // No agent serves the model: UNAVAILABLE, a server-side failure of the call.
    expect(request).toMatchObject({ statusCode: 2, attributes: { 'rpc.grpc.status_code': Status.UNAVAILABLE, 'error.type': 'NoAgentAvailableError' } });
    expect(one(refused, 'titan.schedule', (s) => s.traceId === failed.traceId).attributes['titan.schedule.outcome']).toBe('no_agent');
    expect(refused.some((s) => s.traceId === failed.traceId && s.name.includes('StreamInference'))).toBe(false);
    expect(receiver.bodies().join('\n')).not.toContain('secret prompt');
  });
});

describe('tracing the OpenAI routes (relay)', () => {
  it('joins the trace of an incoming traceparent; the relay carries it to the agent', async () => {
    const traceId = '4bf92f3577b34da6a3ce929d0e0e4736';
    const callerSpanId = '00f067aa0ba902b7';
    const res = await fetch(`http://127.0.0.1:${cluster.coordinator.httpPort}/v1/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', traceparent: `00-${traceId}-${callerSpanId}-01` },
      body: JSON.stringify({ model: SCRIPTED_MODEL, prompt: PROMPT, max_tokens: 3 }),
    });
    expect(res.status).toBe(200);
    await res.json();
    const spans = await receiver.waitForSpans(arrived(['POST /v1/completions', 'POST /v1/completions', 'titan.schedule', 'titan.sign_token', ...AGENT_SPANS]));
    expect(new Set(spans.map((s) => s.traceId))).toEqual(new Set([traceId]));
    const coordinator = one(spans, 'POST /v1/completions', (s) => s.parentSpanId === callerSpanId);
    expect(coordinator).toMatchObject({
      kind: SERVER,
      attributes: { 'http.request.method': 'POST', 'http.route': '/v1/completions', 'http.response.status_code': 200, 'gen_ai.request.model': SCRIPTED_MODEL },
    });
    expect(one(spans, 'titan.schedule').parentSpanId).toBe(coordinator.spanId);
    expect(one(spans, 'titan.sign_token').parentSpanId).toBe(coordinator.spanId);
    const agent = one(spans, 'POST /v1/completions', (s) => s.parentSpanId === coordinator.spanId);
    expect(agent).toMatchObject({ kind: SERVER, attributes: { 'titan.agent.id': 'agent-a', 'http.response.status_code': 200 } });
    for (const name of AGENT_SPANS) expect(one(spans, name).parentSpanId).toBe(agent.spanId);
    expect(receiver.bodies().join('\n')).not.toContain('secret prompt');
  });
});

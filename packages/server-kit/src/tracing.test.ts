import { afterEach, beforeAll, afterAll, describe, expect, it } from '@jest/globals';
import { propagation, trace } from '@opentelemetry/api';
import { Metadata, ServerError, Status } from 'nice-grpc-common';
import { startOtlpReceiver, type OtlpReceiver } from '@titancompute/test-support/otlp-receiver';
import { grpcStatusOf, startChildSpan, startRpcServerSpan, startTracing, tracesEndpoint, type Tracing } from './tracing.js';

const TRACE_ID = '0af7651916cd43dd8448eb211c80319c';
const PARENT_ID = 'b7ad6b7169203331';

let receiver: OtlpReceiver;
let tracing: Tracing | undefined;
beforeAll(async () => {
  receiver = await startOtlpReceiver();
});
afterAll(async () => {
  await receiver.close();
});
afterEach(async () => {
  await tracing?.shutdown();
  tracing = undefined;
  receiver.clear();
});

/** The environment of a service exporting to the test receiver, flushed every 10 ms. */
const envFor = (extra: Record<string, string> = {}) => ({ OTEL_EXPORTER_OTLP_ENDPOINT: receiver.endpoint, OTEL_BSP_SCHEDULE_DELAY: '10', ...extra });

/** Metadata of a call whose caller sent a sampled trace context. */
const tracedMetadata = () => Metadata({ traceparent: `00-${TRACE_ID}-${PARENT_ID}-01` });

describe('tracesEndpoint', () => {
  it('reads the traces endpoint as is, else appends /v1/traces to the base endpoint; none means off', () => {
    expect(tracesEndpoint({})).toBeUndefined();
    expect(tracesEndpoint({ OTEL_EXPORTER_OTLP_ENDPOINT: '  ' })).toBeUndefined();
    expect(tracesEndpoint({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4318' })).toBe('http://collector:4318/v1/traces');
    expect(tracesEndpoint({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4318/' })).toBe('http://collector:4318/v1/traces');
    expect(tracesEndpoint({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://a:1', OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'http://b:2/custom' })).toBe('http://b:2/custom');
  });
});

describe('startTracing', () => {
  it('without an endpoint: off, no provider or propagator registered, spans are the no-op', async () => {
    tracing = await startTracing({ serviceName: 'svc', env: {} });
    expect(tracing.enabled).toBe(false);
    expect(propagation.fields()).toEqual([]);
    const call = startRpcServerSpan('titancompute.v1.AgentService', 'StreamInference', tracedMetadata());
    expect(call.span.isRecording()).toBe(false);
    expect(startChildSpan('child', call.context)).toBeUndefined();
    call.end();
    // OTEL_SDK_DISABLED wins over an endpoint.
    const disabled = await startTracing({ serviceName: 'svc', env: envFor({ OTEL_SDK_DISABLED: 'true' }) });
    expect(disabled.enabled).toBe(false);
    expect(trace.getTracer('t').startSpan('s').isRecording()).toBe(false);
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(receiver.bodies()).toEqual([]);
  });

  it('with an endpoint: a server span joins the caller trace, its children nest, and both reach the receiver on shutdown', async () => {
    tracing = await startTracing({ serviceName: 'svc', serviceVersion: '1.2.3', env: envFor({ OTEL_BSP_SCHEDULE_DELAY: '60000' }) });
    expect(tracing).toMatchObject({ enabled: true, endpoint: `${receiver.endpoint}/v1/traces` });
    expect(propagation.fields()).toContain('traceparent');
    const call = startRpcServerSpan('titancompute.v1.AgentService', 'StreamInference', tracedMetadata(), { 'titan.agent.id': 'gpu-1' });
    const child = startChildSpan('titan.queue_wait', call.context, { 'titan.job.id': 'j1' });
    expect(child).toBeDefined();
    child!.end();
    call.end(new ServerError(Status.UNAVAILABLE, 'draining'));
    // A long batch delay: only the shutdown's flush sends them.
    await tracing.shutdown();
    const spans = receiver.spans();
    const server = spans.find((s) => s.name === 'titancompute.v1.AgentService/StreamInference');
    const queue = spans.find((s) => s.name === 'titan.queue_wait');
    expect(server).toMatchObject({
      traceId: TRACE_ID,
      parentSpanId: PARENT_ID,
      kind: 2,
      serviceName: 'svc',
      statusCode: 2,
      attributes: {
        'rpc.system': 'grpc',
        'rpc.service': 'titancompute.v1.AgentService',
        'rpc.method': 'StreamInference',
        'rpc.grpc.status_code': Status.UNAVAILABLE,
        'error.type': 'ServerError',
        'titan.agent.id': 'gpu-1',
      },
    });
    expect(queue).toMatchObject({ traceId: TRACE_ID, parentSpanId: server!.spanId, attributes: { 'titan.job.id': 'j1' } });
    expect(receiver.bodies().join('')).toContain('"service.version"');
    // After shutdown the SDK is unregistered: back to the no-op.
    expect(trace.getTracer('t').startSpan('s').isRecording()).toBe(false);
  });

  it('OTEL_SERVICE_NAME names the service; a refusal (RESOURCE_EXHAUSTED) is not an error status', async () => {
    tracing = await startTracing({ serviceName: 'svc', env: envFor({ OTEL_SERVICE_NAME: 'renamed' }) });
    const call = startRpcServerSpan('titancompute.v1.CoordinatorService', 'RequestInference', Metadata());
    call.end(Object.assign(new Error('busy'), { grpcStatus: Status.RESOURCE_EXHAUSTED }));
    const [span] = await receiver.waitForSpans((s) => s.length >= 1);
    expect(span).toMatchObject({
      serviceName: 'renamed',
      parentSpanId: undefined,
      statusCode: 0,
      attributes: { 'rpc.grpc.status_code': Status.RESOURCE_EXHAUSTED },
    });
  });

  it.each([
    ['always_off', undefined],
    ['traceidratio', '0'],
    ['parentbased_traceidratio', '0'],
  ])('OTEL_TRACES_SAMPLER=%s (arg %s) records nothing for a new trace', async (sampler, arg) => {
    tracing = await startTracing({ serviceName: 'svc', env: envFor({ OTEL_TRACES_SAMPLER: sampler, ...(arg ? { OTEL_TRACES_SAMPLER_ARG: arg } : {}) }) });
    const call = startRpcServerSpan('s', 'm', Metadata());
    expect(call.span.isRecording()).toBe(false);
    expect(startChildSpan('child', call.context)).toBeUndefined();
    call.end();
    await tracing.forceFlush();
    expect(receiver.spans()).toEqual([]);
  });

  it('parentbased samplers follow the caller: a sampled parent is recorded even with a zero ratio', async () => {
    tracing = await startTracing({ serviceName: 'svc', env: envFor({ OTEL_TRACES_SAMPLER: 'parentbased_traceidratio', OTEL_TRACES_SAMPLER_ARG: '0' }) });
    const call = startRpcServerSpan('s', 'm', tracedMetadata());
    expect(call.span.isRecording()).toBe(true);
    call.end();
  });
});

describe('grpcStatusOf', () => {
  it('answers the status the error mapping gives the caller', () => {
    const signal = new AbortController();
    expect(grpcStatusOf(undefined)).toBe(Status.OK);
    expect(grpcStatusOf(new ServerError(Status.NOT_FOUND, 'x'))).toBe(Status.NOT_FOUND);
    expect(grpcStatusOf(Object.assign(new Error('x'), { grpcStatus: Status.PERMISSION_DENIED }))).toBe(Status.PERMISSION_DENIED);
    expect(grpcStatusOf(new Error('boom'))).toBe(Status.INTERNAL);
    signal.abort();
    expect(grpcStatusOf(new Error('boom'), signal.signal)).toBe(Status.CANCELLED);
    expect(grpcStatusOf(undefined, signal.signal)).toBe(Status.CANCELLED);
  });
});

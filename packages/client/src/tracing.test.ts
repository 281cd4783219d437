import { afterEach, describe, expect, it } from '@jest/globals';
import { context, propagation, trace } from '@opentelemetry/api';
import { InMemorySpanExporter, NodeTracerProvider, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-node';
import { createServer, ServerError, Status } from 'nice-grpc';
import {
  AgentServiceDefinition,
  CoordinatorServiceDefinition,
  type AgentServiceImplementation,
  type CoordinatorServiceImplementation,
  type StreamResponse,
} from '@titancompute/protocol';
import { cliTracesEndpoint, startCliTracing } from './cli/tracing.js';
import { TitanClient } from './index.js';

const PROMPT = 'a private prompt 91c4';
const stops: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const stop of stops.splice(0).reverse()) await stop();
});

const message = (text: string, i: number, done = false): StreamResponse => ({
  sessionToken: '',
  content: text,
  token: text,
  done,
  createdAt: Date.now(),
  metadata: {},
  tokenIndex: i,
  tokenCount: 1,
  stats: done
    ? { tokensGenerated: 1, timeToFirstTokenMs: 1, tokensPerSecond: 100, agentId: 'a1', jobId: 'j1', finishReason: 'length', promptTokens: 4 }
    : undefined,
});

/** A coordinator and an agent that record the `traceparent` each call carried (the coordinator refuses model `busy`). */
async function recordingCluster() {
  const seen = { coordinator: [] as (string | undefined)[], agent: [] as (string | undefined)[], authorization: [] as (string | undefined)[] };
  const agent: AgentServiceImplementation = {
    async *streamInference(_request, ctx) {
      seen.agent.push(ctx.metadata.get('traceparent'));
      yield message('one ', 0);
      yield message('', 1, true);
    },
    async getStatus() {
      throw new ServerError(Status.UNIMPLEMENTED, 'test');
    },
  };
  const agentServer = createServer();
  agentServer.add(AgentServiceDefinition, agent);
  const agentPort = await agentServer.listen('127.0.0.1:0');
  const unimplemented = async (): Promise<never> => {
    throw new ServerError(Status.UNIMPLEMENTED, 'test');
  };
  const coordinator: CoordinatorServiceImplementation = {
    registerAgent: unimplemented,
    async *reportHealth() {
      throw new ServerError(Status.UNIMPLEMENTED, 'test');
    },
    querySystemStatus: unimplemented,
    getPublicKey: unimplemented,
    deregisterAgent: unimplemented,
    async requestInference(request, ctx) {
      seen.coordinator.push(ctx.metadata.get('traceparent'));
      seen.authorization.push(ctx.metadata.get('authorization'));
      if (request.model === 'busy') throw new ServerError(Status.INVALID_ARGUMENT, 'model: not allowed');
      return {
        agentEndpoint: `127.0.0.1:${agentPort}`,
        sessionToken: 't',
        expiresAt: 0,
        jobId: 'j1',
        estimatedRttMs: 1,
        agentId: 'a1',
        maxTokens: 1,
        temperature: 0,
      };
    },
  };
  const coordinatorServer = createServer();
  coordinatorServer.add(CoordinatorServiceDefinition, coordinator);
  const coordinatorPort = await coordinatorServer.listen('127.0.0.1:0');
  stops.push(
    () => agentServer.forceShutdown(),
    () => coordinatorServer.forceShutdown(),
  );
  const client = (apiKey?: string) => {
    const c = new TitanClient({ coordinator: `127.0.0.1:${coordinatorPort}`, requestTimeoutMs: 5000, apiKey: apiKey ?? '' });
    stops.push(() => c.close());
    return c;
  };
  return { seen, client };
}

/** What an application does to trace: its own provider (here in memory), registered globally. */
function registerProvider() {
  const exporter = new InMemorySpanExporter();
  const provider = new NodeTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] });
  provider.register();
  stops.push(async () => {
    await provider.shutdown();
    trace.disable();
    propagation.disable();
    context.disable();
  });
  return exporter;
}

describe('SDK tracing', () => {
  it('without a registered provider: no traceparent on either call (the API no-op)', async () => {
    const { seen, client } = await recordingCluster();
    await client('tk-key').complete({ model: 'm', prompt: PROMPT });
    expect(seen.coordinator).toEqual([undefined]);
    expect(seen.agent).toEqual([undefined]);
    expect(seen.authorization).toEqual(['Bearer tk-key']);
  });

  it("with the application's provider: one span under its active span, carried to coordinator and agent as traceparent", async () => {
    const exporter = registerProvider();
    const { seen, client } = await recordingCluster();
    const app = trace.getTracer('app');
    await app.startActiveSpan('handle-request', async (parent) => {
      await client('tk-key').complete({ model: 'm', prompt: PROMPT, maxTokens: 1 });
      parent.end();
    });
    const spans = exporter.getFinishedSpans();
    const generate = spans.find((s) => s.name === 'titan.generate')!;
    const parent = spans.find((s) => s.name === 'handle-request')!;
    expect(generate.parentSpanContext?.spanId).toBe(parent.spanContext().spanId);
    const { traceId, spanId } = generate.spanContext();
    expect(traceId).toBe(parent.spanContext().traceId);
    // Both services see the client's span as their parent.
    expect(seen.coordinator).toEqual([`00-${traceId}-${spanId}-01`]);
    expect(seen.agent).toEqual([`00-${traceId}-${spanId}-01`]);
    expect(seen.authorization).toEqual(['Bearer tk-key']);
    expect(generate.attributes).toMatchObject({
      'gen_ai.operation.name': 'text_completion',
      'gen_ai.request.model': 'm',
      'gen_ai.request.max_tokens': 1,
      'gen_ai.usage.input_tokens': 4,
      'gen_ai.usage.output_tokens': 1,
      'gen_ai.response.finish_reasons': ['length'],
      'titan.agent.id': 'a1',
      'titan.job.id': 'j1',
      'titan.attempts': 1,
    });
    expect(JSON.stringify(spans.map((s) => s.attributes))).not.toContain('private prompt');
  });

  it('a failed generation ends its span with an error status and the error class', async () => {
    const exporter = registerProvider();
    const { client } = await recordingCluster();
    await expect(client().complete({ model: 'busy', prompt: PROMPT })).rejects.toMatchObject({ name: 'InvalidArgumentError' });
    const [span] = exporter.getFinishedSpans();
    expect(span).toMatchObject({ name: 'titan.generate', status: { code: 2 }, attributes: { 'error.type': 'InvalidArgumentError' } });
    expect(span!.parentSpanContext).toBeUndefined();
  });
});

describe('CLI tracing setup', () => {
  it('loads nothing without an OTLP endpoint; reads the endpoint as the SDK does', async () => {
    expect(cliTracesEndpoint({})).toBeUndefined();
    expect(cliTracesEndpoint({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://c:4318/' })).toBe('http://c:4318/v1/traces');
    expect(cliTracesEndpoint({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://c:4318', OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'http://d/t' })).toBe('http://d/t');
    const off = await startCliTracing({});
    expect(off.enabled).toBe(false);
    expect(propagation.fields()).toEqual([]);
    expect((await startCliTracing({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://c:4318', OTEL_SDK_DISABLED: 'true' })).enabled).toBe(false);
  });
});

/**
 * W3C trace context (`traceparent`, `tracestate`) in gRPC metadata and HTTP headers, through the
 * OpenTelemetry API's global propagator: the client SDK injects it into RequestInference and
 * StreamInference, the coordinator and the agent extract it. Without a registered propagator
 * (no OpenTelemetry SDK set up) inject writes nothing and extract returns its base context.
 */
import { propagation, ROOT_CONTEXT, type Context, type TextMapGetter, type TextMapSetter } from '@opentelemetry/api';
import { Metadata } from 'nice-grpc-common';

/**
 * Span attribute names the TitanCompute spans set: OpenTelemetry's semantic conventions where
 * one exists (RPC, GenAI, HTTP, error), `titan.*` otherwise. Never a prompt, a generated token
 * or a secret.
 */
export const TRACE_ATTRIBUTES = {
  rpcSystem: 'rpc.system',
  rpcService: 'rpc.service',
  rpcMethod: 'rpc.method',
  rpcGrpcStatusCode: 'rpc.grpc.status_code',
  genAiOperationName: 'gen_ai.operation.name',
  genAiRequestModel: 'gen_ai.request.model',
  genAiRequestMaxTokens: 'gen_ai.request.max_tokens',
  genAiUsageInputTokens: 'gen_ai.usage.input_tokens',
  genAiUsageOutputTokens: 'gen_ai.usage.output_tokens',
  genAiResponseFinishReasons: 'gen_ai.response.finish_reasons',
  httpRequestMethod: 'http.request.method',
  httpRoute: 'http.route',
  httpResponseStatusCode: 'http.response.status_code',
  errorType: 'error.type',
  agentId: 'titan.agent.id',
  jobId: 'titan.job.id',
  clientId: 'titan.client.id',
  attempts: 'titan.attempts',
  scheduleOutcome: 'titan.schedule.outcome',
} as const;

/** The tracer name (instrumentation scope) of every TitanCompute span. */
export const TRACER_NAME = 'titancompute';

/** Sets propagation fields on gRPC metadata. */
export const metadataSetter: TextMapSetter<Metadata> = {
  set(carrier, key, value) {
    carrier.set(key, value);
  },
};

/** Reads propagation fields from gRPC metadata (text values only). */
export const metadataGetter: TextMapGetter<Metadata> = {
  keys(carrier) {
    return [...carrier].map(([key]) => key);
  },
  get(carrier, key) {
    const value = carrier.get(key);
    return typeof value === 'string' ? value : undefined;
  },
};

/** Reads propagation fields from Node's incoming HTTP headers (lower-case names). */
export const httpHeadersGetter: TextMapGetter<Readonly<Record<string, string | string[] | undefined>>> = {
  keys(carrier) {
    return Object.keys(carrier);
  },
  get(carrier, key) {
    return carrier[key.toLowerCase()];
  },
};

/**
 * The propagation fields of `context` (e.g. `{ traceparent: '00-…' }`) as a plain record; empty
 * when no propagator is registered or the context holds no span.
 */
export function traceHeaders(context: Context): Record<string, string> {
  const headers: Record<string, string> = {};
  propagation.inject(context, headers);
  return headers;
}

/**
 * Injects the trace context of `context` into `metadata` (created when absent and there is
 * something to carry). Returns the metadata to send: `metadata` itself, a new one, or undefined
 * when there was none and nothing was injected (no allocation on the untraced path).
 *
 * @example
 * ```ts
 * const span = tracer.startSpan('generate');
 * const metadata = injectTraceContext(trace.setSpan(context.active(), span));
 * await coordinator.requestInference(request, metadata ? { metadata } : {});
 * ```
 */
export function injectTraceContext(context: Context, metadata?: Metadata): Metadata | undefined {
  const headers = traceHeaders(context);
  const names = Object.keys(headers);
  if (names.length === 0) return metadata;
  const out = metadata ?? Metadata();
  for (const name of names) metadataSetter.set(out, name, headers[name]!);
  return out;
}

/**
 * The context a server span of a call with `metadata` is parented on: the caller's trace
 * context when it sent one (`traceparent`), else `base` (default: the root context, so a server
 * span never inherits whatever happens to be active in-process).
 */
export function extractTraceContext(metadata: Metadata, base: Context = ROOT_CONTEXT): Context {
  return propagation.extract(base, metadata, metadataGetter);
}

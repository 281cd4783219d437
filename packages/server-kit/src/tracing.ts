/**
 * OpenTelemetry tracing of the services, in one place: {@link startTracing} sets up the SDK
 * (OTLP over HTTP/JSON) only when an OTLP endpoint is configured, and the span helpers the
 * handlers use cost next to nothing otherwise (the `@opentelemetry/api` no-op tracer; the SDK
 * is never loaded).
 */
import {
  context,
  diag,
  DiagLogLevel,
  propagation,
  ROOT_CONTEXT,
  SpanKind,
  SpanStatusCode,
  trace,
  type Attributes,
  type Context,
  type DiagLogger,
  type Span,
} from '@opentelemetry/api';
import { isAbortError } from 'abort-controller-x';
import { ServerError, Status, type Metadata } from 'nice-grpc-common';
import { extractTraceContext, httpHeadersGetter, TRACE_ATTRIBUTES, TRACER_NAME } from '@titancompute/protocol';
import { isGrpcMappedError } from './middleware/error-mapping.js';

/** Options of {@link startTracing}. */
export interface StartTracingOptions {
  /** `service.name` of the spans, unless `OTEL_SERVICE_NAME` names another. */
  serviceName: string;
  /** `service.version` of the spans. */
  serviceVersion?: string | undefined;
  /**
   * Where the `OTEL_*` settings are read (endpoint, sampler, batch delays). Default
   * `process.env`. The SDK itself reads `OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES` and the
   * exporter's headers and timeouts from `process.env`.
   */
  env?: NodeJS.ProcessEnv;
  /** Where the SDK's own warnings (e.g. an unreachable collector) go. Default: nowhere. */
  logger?: { warn(obj: object, msg: string): void } | undefined;
  /** Longest wait for the last spans to leave on {@link Tracing.shutdown}, ms. Default 5000. */
  shutdownTimeoutMs?: number;
}

/** What {@link startTracing} set up. */
export interface Tracing {
  /** Whether spans are exported (an OTLP endpoint is configured and `OTEL_SDK_DISABLED` is not `true`). */
  readonly enabled: boolean;
  /** The OTLP/HTTP traces URL spans are sent to, when enabled. */
  readonly endpoint: string | undefined;
  /** Exports the spans ended so far. */
  forceFlush(): Promise<void>;
  /**
   * Flushes the spans still buffered (bounded by `shutdownTimeoutMs`) and unregisters the SDK;
   * call it once the service has stopped. Idempotent; a no-op when tracing is off.
   */
  shutdown(): Promise<void>;
}

/** The samplers `OTEL_TRACES_SAMPLER` may name (as the OpenTelemetry SDKs define them). */
export const TRACES_SAMPLERS = [
  'always_on',
  'always_off',
  'traceidratio',
  'parentbased_always_on',
  'parentbased_always_off',
  'parentbased_traceidratio',
] as const;

/**
 * The OTLP/HTTP traces URL the environment configures, as the SDK reads it:
 * `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` as is, else `OTEL_EXPORTER_OTLP_ENDPOINT` + `/v1/traces`;
 * undefined when neither is set (tracing off).
 */
export function tracesEndpoint(env: NodeJS.ProcessEnv = process.env): string | undefined {
  const traces = env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT?.trim();
  if (traces) return traces;
  const base = env.OTEL_EXPORTER_OTLP_ENDPOINT?.trim();
  if (!base) return undefined;
  return `${base.replace(/\/+$/, '')}/v1/traces`;
}

/** A non-negative integer environment value, or `fallback`. */
function envInt(env: NodeJS.ProcessEnv, name: string, fallback: number): number {
  const raw = env[name]?.trim();
  const n = raw ? Number(raw) : Number.NaN;
  return Number.isInteger(n) && n >= 0 ? n : fallback;
}

type NodeSdk = typeof import('@opentelemetry/sdk-trace-node');

/** The sampler `OTEL_TRACES_SAMPLER` (and `OTEL_TRACES_SAMPLER_ARG`) name; default `parentbased_always_on`. */
function samplerFromEnv(sdk: NodeSdk, env: NodeJS.ProcessEnv, warn: (msg: string) => void) {
  const name = (env.OTEL_TRACES_SAMPLER?.trim() || 'parentbased_always_on').toLowerCase();
  const rawRatio = env.OTEL_TRACES_SAMPLER_ARG?.trim();
  const parsed = rawRatio ? Number(rawRatio) : 1;
  const ratio = Number.isFinite(parsed) && parsed >= 0 && parsed <= 1 ? parsed : 1;
  if (rawRatio && ratio !== parsed) warn(`OTEL_TRACES_SAMPLER_ARG=${rawRatio} is not a ratio in [0, 1]; using 1`);
  switch (name) {
    case 'always_on':
      return new sdk.AlwaysOnSampler();
    case 'always_off':
      return new sdk.AlwaysOffSampler();
    case 'traceidratio':
      return new sdk.TraceIdRatioBasedSampler(ratio);
    case 'parentbased_always_off':
      return new sdk.ParentBasedSampler({ root: new sdk.AlwaysOffSampler() });
    case 'parentbased_traceidratio':
      return new sdk.ParentBasedSampler({ root: new sdk.TraceIdRatioBasedSampler(ratio) });
    default:
      if (name !== 'parentbased_always_on') warn(`OTEL_TRACES_SAMPLER=${name} is not supported (${TRACES_SAMPLERS.join(', ')}); using parentbased_always_on`);
      return new sdk.ParentBasedSampler({ root: new sdk.AlwaysOnSampler() });
  }
}

/** The SDK's diagnostics, as warnings in the service's log. */
function diagLogger(logger: NonNullable<StartTracingOptions['logger']>): DiagLogger {
  const warn = (message: string, ...args: unknown[]) => logger.warn({ otel: args.length > 0 ? args.map(String) : undefined }, `opentelemetry: ${message}`);
  const ignore = () => {};
  return { error: warn, warn, info: ignore, debug: ignore, verbose: ignore };
}

const OFF: Tracing = { enabled: false, endpoint: undefined, forceFlush: async () => {}, shutdown: async () => {} };

/**
 * Starts tracing for this process when the environment configures an OTLP endpoint
 * (`OTEL_EXPORTER_OTLP_ENDPOINT` or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`; `OTEL_SDK_DISABLED=true`
 * turns it off): loads the OpenTelemetry SDK (dynamic imports, only then), registers a tracer
 * provider (resource `service.name`/`service.version`, `OTEL_SERVICE_NAME` and
 * `OTEL_RESOURCE_ATTRIBUTES` win; the sampler of `OTEL_TRACES_SAMPLER`/`_ARG`), W3C trace-context
 * propagation and a batch processor (`OTEL_BSP_SCHEDULE_DELAY`, `OTEL_BSP_EXPORT_TIMEOUT`,
 * `OTEL_BSP_MAX_QUEUE_SIZE`, `OTEL_BSP_MAX_EXPORT_BATCH_SIZE`) exporting OTLP/HTTP JSON. Without
 * an endpoint it loads nothing and every span is the API's no-op. Once per process (bins call it).
 *
 * @example
 * ```ts
 * const tracing = await startTracing({ serviceName: 'titan-coordinator', logger });
 * onShutdownSignal(async () => { await coordinator.stop(); await tracing.shutdown(); process.exit(0); });
 * ```
 */
export async function startTracing(options: StartTracingOptions): Promise<Tracing> {
  const env = options.env ?? process.env;
  const endpoint = tracesEndpoint(env);
  if (endpoint === undefined || env.OTEL_SDK_DISABLED?.trim().toLowerCase() === 'true') return OFF;
  const [sdk, { OTLPTraceExporter }, resources, semconv] = await Promise.all([
    import('@opentelemetry/sdk-trace-node'),
    import('@opentelemetry/exporter-trace-otlp-http'),
    import('@opentelemetry/resources'),
    import('@opentelemetry/semantic-conventions'),
  ]);
  const { logger } = options;
  if (logger) diag.setLogger(diagLogger(logger), DiagLogLevel.WARN);
  const warn = (msg: string) => logger?.warn({}, `opentelemetry: ${msg}`);
  const resource = resources
    .defaultResource()
    .merge(
      resources.resourceFromAttributes({
        [semconv.ATTR_SERVICE_NAME]: env.OTEL_SERVICE_NAME?.trim() || options.serviceName,
        ...(options.serviceVersion ? { [semconv.ATTR_SERVICE_VERSION]: options.serviceVersion } : {}),
      }),
    )
    .merge(resources.detectResources({ detectors: [resources.envDetector] }));
  const processor = new sdk.BatchSpanProcessor(new OTLPTraceExporter({ url: endpoint }), {
    scheduledDelayMillis: envInt(env, 'OTEL_BSP_SCHEDULE_DELAY', 5000),
    exportTimeoutMillis: envInt(env, 'OTEL_BSP_EXPORT_TIMEOUT', 30_000),
    maxQueueSize: envInt(env, 'OTEL_BSP_MAX_QUEUE_SIZE', 2048),
    maxExportBatchSize: envInt(env, 'OTEL_BSP_MAX_EXPORT_BATCH_SIZE', 512),
  });
  const provider = new sdk.NodeTracerProvider({ resource, sampler: samplerFromEnv(sdk, env, warn), spanProcessors: [processor] });
  provider.register();
  const shutdownTimeoutMs = options.shutdownTimeoutMs ?? 5000;
  let stopping: Promise<void> | undefined;
  return {
    enabled: true,
    endpoint,
    forceFlush: () => provider.forceFlush(),
    shutdown: () =>
      (stopping ??= (async () => {
        let timer: NodeJS.Timeout | undefined;
        const timeout = new Promise<void>((resolve) => {
          timer = setTimeout(resolve, shutdownTimeoutMs);
          timer.unref();
        });
        await Promise.race([provider.shutdown().catch((err: unknown) => warn(`shutdown failed: ${String(err)}`)), timeout]);
        clearTimeout(timer);
        trace.disable();
        propagation.disable();
        context.disable();
        diag.disable();
      })()),
  };
}

/** The services' tracer (looked up per span: cheap, and right after a provider is registered or removed). */
export function titanTracer() {
  return trace.getTracer(TRACER_NAME);
}

/**
 * The gRPC status a caller gets for `err` thrown by a handler, as server-kit's error mapping
 * answers it: a `ServerError`'s code, a declared `grpcStatus`, CANCELLED for an abort or a call
 * the client cancelled, else INTERNAL; OK without an error.
 */
export function grpcStatusOf(err: unknown, signal?: AbortSignal): Status {
  if (err === undefined) return signal?.aborted ? Status.CANCELLED : Status.OK;
  if (err instanceof ServerError) return err.code;
  if (isGrpcMappedError(err)) return err.grpcStatus;
  if (isAbortError(err) || signal?.aborted) return Status.CANCELLED;
  return Status.INTERNAL;
}

/** Server errors by the RPC semantic conventions: the statuses that mean the server failed. */
const SERVER_ERROR_STATUSES: ReadonlySet<Status> = new Set([
  Status.UNKNOWN,
  Status.DEADLINE_EXCEEDED,
  Status.UNIMPLEMENTED,
  Status.INTERNAL,
  Status.UNAVAILABLE,
  Status.DATA_LOSS,
]);

/** A gRPC server span and the context its children are started in. */
export interface RpcServerSpan {
  readonly span: Span;
  /** The caller's trace context with this span: pass it to the work the call does. */
  readonly context: Context;
  /**
   * Ends the span with the call's outcome: `rpc.grpc.status_code` (see {@link grpcStatusOf}),
   * `error.type` and an error status for server failures. Call once, in a `finally`.
   */
  end(err?: unknown, signal?: AbortSignal): void;
}

/**
 * Starts the SERVER span of a gRPC call `service`/`method` (`titancompute.v1.AgentService`,
 * `StreamInference`) as a child of the trace context the caller sent in `metadata`
 * (`traceparent`), with the RPC semantic attributes and `attributes`.
 */
export function startRpcServerSpan(service: string, method: string, metadata: Metadata, attributes?: Attributes): RpcServerSpan {
  const parent = extractTraceContext(metadata);
  const span = titanTracer().startSpan(
    `${service}/${method}`,
    {
      kind: SpanKind.SERVER,
      attributes: { [TRACE_ATTRIBUTES.rpcSystem]: 'grpc', [TRACE_ATTRIBUTES.rpcService]: service, [TRACE_ATTRIBUTES.rpcMethod]: method, ...attributes },
    },
    parent,
  );
  return {
    span,
    context: span.isRecording() ? trace.setSpan(parent, span) : parent,
    end(err, signal) {
      if (span.isRecording()) span.setAttribute(TRACE_ATTRIBUTES.rpcGrpcStatusCode, recordServerOutcome(span, err, signal));
      span.end();
    },
  };
}

/**
 * Records on a server span (gRPC or HTTP) how its request ended, and returns the gRPC status
 * the caller got (see {@link grpcStatusOf}): a failure sets `error.type`, and an error status
 * when the server failed (UNKNOWN, DEADLINE_EXCEEDED, UNIMPLEMENTED, INTERNAL, UNAVAILABLE,
 * DATA_LOSS; a refusal such as RESOURCE_EXHAUSTED is the caller's outcome, not an error of the
 * span). Does not end the span.
 */
export function recordServerOutcome(span: Span, err: unknown, signal?: AbortSignal): Status {
  const status = grpcStatusOf(err, signal);
  if (err !== undefined && status !== Status.OK) span.setAttribute(TRACE_ATTRIBUTES.errorType, err instanceof Error ? err.name : Status[status]);
  if (SERVER_ERROR_STATUSES.has(status)) span.setStatus({ code: SpanStatusCode.ERROR, message: err instanceof Error ? err.message : Status[status] });
  return status;
}

/**
 * Starts the SERVER span of an HTTP request (`POST /v1/chat/completions`) as a child of the
 * trace context in its headers (`traceparent`), with the HTTP semantic attributes and
 * `attributes`; returns it with the context its children are started in.
 */
export function startHttpServerSpan(
  method: string,
  route: string,
  headers: Readonly<Record<string, string | string[] | undefined>>,
  attributes?: Attributes,
): { span: Span; context: Context } {
  const parent = propagation.extract(ROOT_CONTEXT, headers, httpHeadersGetter);
  const span = titanTracer().startSpan(
    `${method} ${route}`,
    { kind: SpanKind.SERVER, attributes: { [TRACE_ATTRIBUTES.httpRequestMethod]: method, [TRACE_ATTRIBUTES.httpRoute]: route, ...attributes } },
    parent,
  );
  return { span, context: span.isRecording() ? trace.setSpan(parent, span) : parent };
}

/**
 * Starts a span named `name` under the span of `parent`, only when that span records (tracing
 * on and the trace sampled): undefined otherwise, so an untraced request allocates nothing.
 */
export function startChildSpan(name: string, parent: Context | undefined, attributes?: Attributes): Span | undefined {
  if (parent === undefined || !trace.getSpan(parent)?.isRecording()) return undefined;
  return titanTracer().startSpan(name, { attributes }, parent);
}

/** Ends `span` (if any) as failed with `err`: an error status and `error.type`, never a stack or a prompt. */
export function failSpan(span: Span | undefined, err: unknown): void {
  if (!span) return;
  span.setAttribute(TRACE_ATTRIBUTES.errorType, err instanceof Error ? err.name : 'Error');
  span.setStatus({ code: SpanStatusCode.ERROR, message: err instanceof Error ? err.message : String(err) });
  span.end();
}

/**
 * The `titan` CLI's own OpenTelemetry setup (an application of the SDK, so it registers a
 * provider itself): only when `OTEL_EXPORTER_OTLP_ENDPOINT` or
 * `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` is set is the OpenTelemetry SDK loaded (dynamic
 * imports), with the OTLP/HTTP JSON exporter, `service.name` `titan-cli` (or
 * `OTEL_SERVICE_NAME`), `OTEL_RESOURCE_ATTRIBUTES`, the sampler of `OTEL_TRACES_SAMPLER`/`_ARG`
 * and W3C trace-context propagation; the services do the same in server-kit's `tracing.ts`.
 */

/** What {@link startCliTracing} set up. */
export interface CliTracing {
  /** Whether spans are exported. */
  readonly enabled: boolean;
  /** Exports what is buffered and unregisters the SDK (at most `timeoutMs`); a no-op when off. */
  shutdown(timeoutMs?: number): Promise<void>;
}

/** `service.name` of the CLI's spans unless `OTEL_SERVICE_NAME` names another. */
export const CLI_SERVICE_NAME = 'titan-cli';

/** The OTLP/HTTP traces URL of `env` (the signal's own endpoint as is, else the base + `/v1/traces`), or undefined. */
export function cliTracesEndpoint(env: NodeJS.ProcessEnv): string | undefined {
  const traces = env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT?.trim();
  if (traces) return traces;
  const base = env.OTEL_EXPORTER_OTLP_ENDPOINT?.trim();
  return base ? `${base.replace(/\/+$/, '')}/v1/traces` : undefined;
}

type NodeSdk = typeof import('@opentelemetry/sdk-trace-node');

/** `OTEL_TRACES_SAMPLER` (`always_on`, `always_off`, `traceidratio`, `parentbased_*`; default `parentbased_always_on`). */
function cliSampler(sdk: NodeSdk, env: NodeJS.ProcessEnv) {
  const parsed = Number(env.OTEL_TRACES_SAMPLER_ARG?.trim() || '1');
  const ratio = Number.isFinite(parsed) && parsed >= 0 && parsed <= 1 ? parsed : 1;
  const root = (name: string) =>
    name === 'always_off' ? new sdk.AlwaysOffSampler() : name === 'traceidratio' ? new sdk.TraceIdRatioBasedSampler(ratio) : new sdk.AlwaysOnSampler();
  const name = (env.OTEL_TRACES_SAMPLER?.trim() || 'parentbased_always_on').toLowerCase();
  return name.startsWith('parentbased_') ? new sdk.ParentBasedSampler({ root: root(name.slice('parentbased_'.length)) }) : root(name);
}

/**
 * Sets up tracing for one `titan` run when `env` configures an OTLP endpoint (and
 * `OTEL_SDK_DISABLED` is not `true`); otherwise loads nothing.
 *
 * @example
 * ```ts
 * const tracing = await startCliTracing(process.env);
 * const code = await runCli(argv, io);
 * await tracing.shutdown();
 * ```
 */
export async function startCliTracing(env: NodeJS.ProcessEnv): Promise<CliTracing> {
  const url = cliTracesEndpoint(env);
  if (url === undefined || env.OTEL_SDK_DISABLED?.trim().toLowerCase() === 'true') return { enabled: false, shutdown: async () => {} };
  const [sdk, { OTLPTraceExporter }, resources, semconv, api] = await Promise.all([
    import('@opentelemetry/sdk-trace-node'),
    import('@opentelemetry/exporter-trace-otlp-http'),
    import('@opentelemetry/resources'),
    import('@opentelemetry/semantic-conventions'),
    import('@opentelemetry/api'),
  ]);
  const resource = resources
    .defaultResource()
    .merge(resources.resourceFromAttributes({ [semconv.ATTR_SERVICE_NAME]: env.OTEL_SERVICE_NAME?.trim() || CLI_SERVICE_NAME }))
    .merge(resources.detectResources({ detectors: [resources.envDetector] }));
  const provider = new sdk.NodeTracerProvider({
    resource,
    sampler: cliSampler(sdk, env),
    spanProcessors: [new sdk.BatchSpanProcessor(new OTLPTraceExporter({ url }))],
  });
  provider.register();
  return {
    enabled: true,
    async shutdown(timeoutMs = 5000) {
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<void>((resolve) => {
        timer = setTimeout(resolve, timeoutMs);
        timer.unref();
      });
      await Promise.race([provider.shutdown().catch(() => undefined), timeout]);
      clearTimeout(timer);
      api.trace.disable();
      api.propagation.disable();
      api.context.disable();
    },
  };
}

/**
 * `@titancompute/server-kit` (internal): the one way every TitanCompute service reads its
 * config, logs, serves gRPC (health, reflection, TLS/mTLS, proto_version checks, error
 * mapping) and shuts down.
 *
 * @example
 * ```ts
 * import { commonOptions, createLogger, createServiceServer, loadConfig, onShutdownSignal, runMain, serverTlsFromConfig } from '@titancompute/server-kit';
 *
 * runMain(async () => {
 *   const config = loadConfig(commonOptions({ service: 'coordinator', port: 50051, portEnv: ['COORDINATOR_PORT'] }), { name: 'titan-coordinator' });
 *   const logger = createLogger({ service: 'titan-coordinator', level: config.logLevel });
 *   const server = createServiceServer({ logger, host: config.host, port: config.port, tls: serverTlsFromConfig(config),
 *     protoVersionPolicy: config.protoVersionPolicy, shutdownTimeoutMs: config.shutdownTimeoutMs });
 *   server.add(CoordinatorServiceDefinition, impl);
 *   await server.listen();
 *   onShutdownSignal(async () => { await server.shutdown(); process.exit(0); });
 * });
 * ```
 *
 * @packageDocumentation
 */
export {
  boolOption,
  COMMON_DEFAULTS,
  commonOptions,
  defaultDataDir,
  durationOption,
  enumOption,
  formatDuration,
  formatUsage,
  intOption,
  listOption,
  loadConfig,
  LOG_FORMATS,
  LOG_LEVELS,
  numberOption,
  parseDurationMs,
  portOption,
  readPackageVersion,
  requiredStringOption,
  stringOption,
  type CommonDefaults,
  type CommonOptionDefaults,
  type ConfigOf,
  type ConfigSpec,
  type LoadConfigOptions,
  type OptionSpec,
} from './config.js';
export { ConfigError, EXIT_USAGE, HelpRequested, ServerKitError, VersionRequested } from './errors.js';
export { createLogger, type LogFormat, type Logger, type LoggerOptions } from './logger.js';
export { createErrorMappingMiddleware, isGrpcMappedError, type GrpcMappedError } from './middleware/error-mapping.js';
export { createRequestLoggingMiddleware } from './middleware/request-logging.js';
export { createServiceMiddleware, type ServiceMiddlewareParts } from './middleware/service-middleware.js';
export { exitWithParent, onShutdownSignal, runMain } from './run-main.js';
export { withPooledClient, type PooledClient } from './postgres/pooled-client.js';
export { closeHttpServer, DEFAULT_HTTP_CLOSE_GRACE_MS, type ClosableHttpApp, type CloseHttpServerOptions } from './http-close.js';
export { createServiceServer, type ServiceServer, type ServiceServerOptions } from './server.js';
export { clientTlsFromConfig, createServerCredentials, serverTlsFromConfig, type ServerTlsOptions } from './tls.js';
export {
  failSpan,
  grpcStatusOf,
  recordServerOutcome,
  startChildSpan,
  startHttpServerSpan,
  startRpcServerSpan,
  startTracing,
  titanTracer,
  tracesEndpoint,
  TRACES_SAMPLERS,
  type RpcServerSpan,
  type StartTracingOptions,
  type Tracing,
} from './tracing.js';

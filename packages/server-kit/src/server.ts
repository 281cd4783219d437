import { setMaxListeners } from 'node:events';
import { createServer, type CompatServiceDefinition, type Server, type ServiceImplementation } from 'nice-grpc';
import { HealthDefinition, HealthServiceImpl, HealthState } from 'nice-grpc-server-health';
import { ServerReflection, ServerReflectionService } from 'nice-grpc-server-reflection';
import { createProtoVersionCheck, DESCRIPTOR_SET_BASE64, type ProtoVersionPolicy } from '@titancompute/protocol';
import type { Logger } from 'pino';
import { createDrainController } from './middleware/drain.js';
import { createRequestDecodingGuard } from './middleware/request-decoding.js';
import { createServiceMiddleware } from './middleware/service-middleware.js';
import { createReflectionDescriptorSet } from './reflection.js';
import { createServerCredentials, type ServerTlsOptions } from './tls.js';

/** Options of {@link createServiceServer}. */
export interface ServiceServerOptions {
  logger: Logger;
  /** Default `0.0.0.0`. */
  host?: string;
  /** 0 picks a free port. */
  port: number;
  /** Plaintext when absent. */
  tls?: ServerTlsOptions | undefined;
  /** Default `strict`. */
  protoVersionPolicy?: ProtoVersionPolicy;
  /** How long in-flight calls may drain on shutdown before they are cut. Default 10 s. */
  shutdownTimeoutMs?: number;
  /** grpc-js server options (message sizes, keepalive). */
  channelOptions?: Record<string, unknown>;
}

/** A running (or ready to run) gRPC server with health, reflection and graceful shutdown. */
export interface ServiceServer {
  /** Adds a service; its full name is served by health checks and reflection. */
  add<S extends CompatServiceDefinition>(definition: S & { fullName: string }, implementation: ServiceImplementation<S>): void;
  /** Binds and starts serving; reports SERVING. Returns the bound port. */
  listen(): Promise<{ port: number; address: string }>;
  /** Reports SERVING or NOT_SERVING for every service. */
  setServing(serving: boolean): void;
  /**
   * Aborted when shutdown begins: long-lived streams (subscriptions, health streams) should
   * end on it so draining does not wait for the deadline.
   */
  readonly shutdownSignal: AbortSignal;
  /**
   * NOT_SERVING; refuse new calls with UNAVAILABLE while in-flight calls drain (up to the
   * deadline); then close, cutting what is left. Idempotent.
   */
  shutdown(): Promise<void>;
  /** The nice-grpc server, for tests. */
  readonly raw: Server;
}

/**
 * Starts a nice-grpc server the way every TitanCompute service does. Every call passes, in
 * this order: drain (UNAVAILABLE once shutting down) → request logging (sees the status the
 * caller gets) → error mapping → proto_version check → request decoding check (a request the
 * generated code cannot decode, e.g. an int64 above 2^53, is INVALID_ARGUMENT naming the
 * field) → handler. Serves grpc.health.v1 (NOT_SERVING while shutting down) and server
 * reflection that describes every listed service, health included; TLS or mTLS when configured.
 *
 * @example
 * ```ts
 * const server = createServiceServer({ logger, port: config.port, protoVersionPolicy: config.protoVersionPolicy });
 * server.add(CoordinatorServiceDefinition, impl);
 * const { port } = await server.listen();
 * onShutdownSignal(() => server.shutdown());
 * ```
 */
export function createServiceServer(options: ServiceServerOptions): ServiceServer {
  const { logger } = options;
  const drain = createDrainController();
  const contract = Buffer.from(DESCRIPTOR_SET_BASE64, 'base64');
  const decoding = createRequestDecodingGuard(contract);
  // One middleware doing, in order: drain → logging → error mapping → proto_version → decoding.
  const server = createServer({ 'grpc.max_receive_message_length': 16 * 1024 * 1024, ...options.channelOptions }).use(
    createServiceMiddleware({
      drain,
      logger,
      protoVersion: createProtoVersionCheck({ protoVersionPolicy: options.protoVersionPolicy ?? 'strict' }),
      decoding,
    }),
  );
  const health = HealthState();
  const serviceNames: string[] = [];
  const shutdownController = new AbortController();
  // Every long-lived stream listens for the shutdown (a thousand agents' health streams on a coordinator).
  setMaxListeners(0, shutdownController.signal);
  let shuttingDown: Promise<void> | undefined;
  let listening = false;

  const setServing = (serving: boolean) => {
    const status = serving ? 'healthy' : 'unhealthy';
    health.setStatus(status);
    for (const name of serviceNames) health.setStatus(status, name);
  };

  return {
    raw: server,
    shutdownSignal: shutdownController.signal,
    add(definition, implementation) {
      serviceNames.push(definition.fullName);
      server.add(decoding.guard(definition), implementation);
    },
    async listen() {
      server.add(HealthDefinition, HealthServiceImpl(health));
      server.add(ServerReflectionService, ServerReflection(createReflectionDescriptorSet(contract), [...serviceNames, 'grpc.health.v1.Health']));
      const host = options.host ?? '0.0.0.0';
      const hostPart = host.includes(':') ? `[${host}]` : host;
      const port = await server.listen(`${hostPart}:${options.port}`, createServerCredentials(options.tls));
      listening = true;
      setServing(true);
      logger.info({ host, port, tls: Boolean(options.tls), mtls: Boolean(options.tls?.caFile), services: serviceNames }, 'listening');
      return { port, address: `${hostPart}:${port}` };
    },
    setServing,
    shutdown() {
      shuttingDown ??= (async () => {
        setServing(false);
        shutdownController.abort();
        if (!listening) return;
        const timeoutMs = options.shutdownTimeoutMs ?? 10_000;
        // Keep listening while in-flight calls finish: health says NOT_SERVING, new calls
        // get UNAVAILABLE. Then close; whatever is still running at the deadline is cut.
        drain.startDraining();
        logger.info({ inFlight: drain.inFlight, timeoutMs }, 'draining');
        const drained = await drain.waitIdle(timeoutMs);
        if (!drained) {
          logger.warn({ timeoutMs, inFlight: drain.inFlight }, 'in-flight calls did not drain in time; cutting them');
          server.forceShutdown();
        } else {
          let timer: NodeJS.Timeout | undefined;
          const closed = await Promise.race([
            server.shutdown().then(() => true),
            new Promise<false>((resolve) => (timer = setTimeout(() => resolve(false), 1000))),
          ]);
          clearTimeout(timer);
          if (!closed) server.forceShutdown();
        }
        logger.info('server stopped');
      })();
      return shuttingDown;
    },
  };
}

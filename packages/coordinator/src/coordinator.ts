import { mkdir } from 'node:fs/promises';
import { CoordinatorServiceDefinition, type ClientTlsOptions, type ProtoVersionPolicy } from '@titancompute/protocol';
import { createLogger, createServiceServer, type Logger, type ServerTlsOptions } from '@titancompute/server-kit';
import { createHttpServer } from './http/http-server.js';
import { createEndpointVerifier, type EndpointVerifierOptions } from './identity/endpoint-verifier.js';
import { createGrantLedger } from './identity/grant-ledger.js';
import { openIdentityStore } from './identity/identity-store.js';
import { resolveJoinToken } from './join-token.js';
import { createCoordinatorMetrics } from './metrics.js';
import { createAgentRegistry } from './registry/agent-registry.js';
import type { CircuitBreakerOptions } from './scheduler/circuit-breaker.js';
import { createScheduler, type SchedulerWeights } from './scheduler/scheduler.js';
import { createCoordinatorService } from './service/coordinator-service.js';
import { createRequestRouter } from './service/request-router.js';
import { openKeyring } from './tokens/keyring.js';
import { DEFAULT_ISSUER } from './tokens/session-token.js';

/** Options of {@link startCoordinator}. */
export interface CoordinatorOptions {
  /** Listen address. Default `0.0.0.0`. */
  host?: string;
  /** gRPC port; 0 picks a free one. Default 50051. */
  port?: number;
  /** HTTP port (REST + /metrics); 0 picks a free one. Default 8080. */
  httpPort?: number;
  /** A REST client must send its whole request within this, or gets 408. Default 30 s. */
  httpRequestTimeoutMs?: number;
  /** State: `keys/keyring.json`, `join-token`, `coordinator.db` (agent identities). */
  dataDir: string;
  /** Join token; when absent it is read from (or generated into) `<dataDir>/join-token`. */
  joinToken?: string | undefined;
  /** Default 30 s. */
  heartbeatTimeoutMs?: number;
  /** Interval agents are told to use. Default 2 s. */
  heartbeatIntervalMs?: number;
  /** Session token lifetime. Default 5 min. */
  tokenTtlMs?: number;
  /** How long a granted slot stays reserved unless the agent reports the job started. Default 10 s. */
  claimWindowMs?: number;
  /** Share (0-1] of the fleet's slots one client_id may hold (at least 1 slot). Default 0.5. */
  maxClientShare?: number;
  /** Retry hint (ms) of busy answers when running jobs block. Default 250 ms. */
  busyRetryHintMs?: number;
  /** Token issuer. Default "titancompute-coordinator". */
  issuer?: string;
  /** Default 4096. */
  maxTokensLimit?: number;
  /** Default 32768. */
  maxPromptBytes?: number;
  /** Empty or absent: any model. */
  allowedModels?: readonly string[];
  weights?: Partial<SchedulerWeights>;
  breaker?: CircuitBreakerOptions;
  /** How often the keyring file is re-read for rotations. Default 1 s. */
  keyReloadIntervalMs?: number;
  protoVersionPolicy?: ProtoVersionPolicy;
  /** Drain deadline on stop. Default 10 s. */
  shutdownTimeoutMs?: number;
  logger?: Logger;
  /** Used when no logger is given. Default `info`. */
  logLevel?: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';
  tls?: ServerTlsOptions | undefined;
  /** TLS of outgoing calls (endpoint checks of agents); the bin uses the server's files. Plaintext when absent. */
  clientTls?: ClientTlsOptions | undefined;
  /**
   * Dial every new or changed agent endpoint (grpc health SERVING + GetStatus with the agent's
   * id) before scheduling to it. Default true; false trusts registered endpoints (tests only).
   */
  verifyAgentEndpoints?: boolean;
  /** Retries and deadlines of the endpoint checks (defaults: 5 attempts, 250 ms → 4 s backoff, 3 s each, recheck after 30 s). */
  endpointVerification?: Omit<EndpointVerifierOptions, 'logger' | 'tls'>;
}

/** A running coordinator. */
export interface RunningCoordinator {
  port: number;
  httpPort: number;
  /** `host:port` of the gRPC server. */
  address: string;
  joinToken: string;
  /** Re-reads the keyring now (the bin calls it on SIGHUP). */
  reloadKeys(): Promise<boolean>;
  /** Ends health streams, drains calls, closes HTTP. Idempotent. */
  stop(): Promise<void>;
}

/**
 * Starts a coordinator: gRPC CoordinatorService (with health and reflection), the v1 REST API
 * and /metrics, the agent registry with its eviction sweeper, and the persisted keyring.
 *
 * @example
 * ```ts
 * const coordinator = await startCoordinator({ dataDir: '/tmp/c', port: 0, httpPort: 0 });
 * console.log(coordinator.address, coordinator.joinToken);
 * await coordinator.stop();
 * ```
 */
export async function startCoordinator(options: CoordinatorOptions): Promise<RunningCoordinator> {
  const logger = options.logger ?? createLogger({ service: 'titan-coordinator', level: options.logLevel ?? 'info' });
  const heartbeatTimeoutMs = options.heartbeatTimeoutMs ?? 30_000;
  const heartbeatIntervalMs = options.heartbeatIntervalMs ?? 2_000;
  const tokenTtlMs = options.tokenTtlMs ?? 300_000;
  const issuer = options.issuer ?? DEFAULT_ISSUER;
  const host = options.host ?? '0.0.0.0';

  await mkdir(options.dataDir, { recursive: true, mode: 0o700 });
  const join = await resolveJoinToken(options.dataDir, options.joinToken);
  if (join.source === 'generated') logger.info({ file: join.file }, 'generated a join token; agents need it (TITAN_JOIN_TOKEN)');
  else if (join.source === 'file') logger.info({ file: join.file }, 'using the join token from the data directory');

  // Agent id → credential bindings (<dataDir>/coordinator.db); they survive restarts.
  const identities = openIdentityStore({ dataDir: options.dataDir });
  const grants = createGrantLedger({ graceMs: Math.max(tokenTtlMs, heartbeatTimeoutMs) });
  const endpoints =
    options.verifyAgentEndpoints === false
      ? undefined
      : createEndpointVerifier({ ...options.endpointVerification, tls: options.clientTls, logger });
  const keyring = await openKeyring({ dataDir: options.dataDir, tokenTtlMs });
  keyring.watch(options.keyReloadIntervalMs ?? 1000);
  logger.info({ kid: keyring.current().kid, file: keyring.file }, 'signing key loaded');

  let metricsRef: ReturnType<typeof createCoordinatorMetrics> | undefined;
  const registry = createAgentRegistry({
    heartbeatTimeoutMs,
    ...(options.claimWindowMs !== undefined ? { claimWindowMs: options.claimWindowMs } : {}),
    ...(options.breaker ? { breaker: options.breaker } : {}),
    onJobOutcome: (_record, outcome) => metricsRef?.jobFinished(outcome.error),
    onReservationReleased: (_record, _jobId, reason) => metricsRef?.reservationReleased(reason),
    onEvicted: (record) => logger.warn({ agentId: record.agentId, heartbeatTimeoutMs }, 'agent evicted: no heartbeat'),
  });
  const metrics = createCoordinatorMetrics(registry);
  metricsRef = metrics;
  registry.startSweeper();

  const scheduler = createScheduler({ ...(options.weights ? { weights: options.weights } : {}) });
  const routeUnrecorded = createRequestRouter({
    registry,
    scheduler,
    keyring,
    metrics,
    limits: {
      maxTokensLimit: options.maxTokensLimit ?? 4096,
      maxPromptBytes: options.maxPromptBytes ?? 32 * 1024,
      allowedModels: new Set(options.allowedModels ?? []),
    },
    issuer,
    tokenTtlMs,
    ...(options.busyRetryHintMs !== undefined ? { busyRetryHintMs: options.busyRetryHintMs } : {}),
    ...(options.maxClientShare !== undefined ? { maxClientShare: options.maxClientShare } : {}),
  });

  // Every grant is recorded, so only outcomes of jobs really handed to an agent count.
  const route: typeof routeUnrecorded = async (input) => {
    const grant = await routeUnrecorded(input);
    grants.grant(grant.agentId, grant.jobId, grant.expiresAt * 1000);
    return grant;
  };

  const server = createServiceServer({
    logger,
    host,
    port: options.port ?? 50051,
    tls: options.tls,
    protoVersionPolicy: options.protoVersionPolicy ?? 'strict',
    ...(options.shutdownTimeoutMs !== undefined ? { shutdownTimeoutMs: options.shutdownTimeoutMs } : {}),
  });
  server.add(
    CoordinatorServiceDefinition,
    createCoordinatorService({
      registry,
      keyring,
      metrics,
      route,
      joinToken: join.token,
      issuer,
      heartbeatIntervalMs,
      startedAt: Date.now(),
      shutdownSignal: server.shutdownSignal,
      logger,
      identities,
      grants,
      endpoints,
    }),
  );

  const http = createHttpServer({ registry, metrics, route, logger, ...(options.httpRequestTimeoutMs !== undefined ? { requestTimeoutMs: options.httpRequestTimeoutMs } : {}) });
  let listened: { port: number; address: string };
  let httpPort: number;
  try {
    listened = await server.listen();
    await http.listen({ host, port: options.httpPort ?? 8080 });
    const addr = http.server.address();
    httpPort = typeof addr === 'object' && addr ? addr.port : (options.httpPort ?? 8080);
  } catch (err) {
    registry.stop();
    keyring.close();
    endpoints?.stop();
    grants.stop();
    await server.shutdown();
    await http.close();
    identities.close();
    throw err;
  }
  logger.info({ httpPort, host }, 'http listening');

  let stopping: Promise<void> | undefined;
  return {
    port: listened.port,
    httpPort,
    address: listened.address,
    joinToken: join.token,
    reloadKeys: () => keyring.reload(),
    stop() {
      stopping ??= (async () => {
        registry.stop();
        keyring.close();
        endpoints?.stop();
        grants.stop();
        await Promise.all([server.shutdown(), http.close()]);
        identities.close();
      })();
      return stopping;
    },
  };
}

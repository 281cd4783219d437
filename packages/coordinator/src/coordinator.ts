import { mkdir } from 'node:fs/promises';
import { AdminServiceDefinition, CoordinatorServiceDefinition } from '@titancompute/protocol';
import { closeHttpServer, createLogger, createServiceServer } from '@titancompute/server-kit';
import { resolveCoordinatorOptions, SERVICE_NAME, type CoordinatorOptions } from './config.js';
import { createDashboard } from './dashboard/dashboard.js';
import { createTrafficRecorder, fleetLoad, recordTraffic } from './dashboard/traffic-recorder.js';
import { createAgentRelay } from './http/agent-relay.js';
import { registerAdminRoutes } from './http/admin-routes.js';
import { createHttpServer } from './http/http-server.js';
import { createEndpointVerifier } from './identity/endpoint-verifier.js';
import { createGrantLedger, recordGrants } from './identity/grant-ledger.js';
import { resolveJoinToken } from './join-token.js';
import { createAdminService } from './keys/admin-service.js';
import { resolveAdminToken } from './keys/admin-token.js';
import { createApiKeys, type AuthMode } from './keys/api-keys.js';
import { createCoordinatorMetrics } from './metrics.js';
import { createAgentRegistry } from './registry/agent-registry.js';
import { openPostgresFleetStore } from './registry/postgres-fleet-store.js';
import { createPrefixAffinity } from './scheduler/prefix-affinity.js';
import { createScheduler } from './scheduler/scheduler.js';
import { createCoordinatorService } from './service/coordinator-service.js';
import { createRequestRouter } from './service/request-router.js';
import { openCoordinatorStore } from './store/coordinator-store.js';

export type { CoordinatorOptions } from './config.js';

/** A running coordinator. */
export interface RunningCoordinator {
  port: number;
  httpPort: number;
  /** `host:port` of the gRPC server. */
  address: string;
  joinToken: string;
  /** The admin credential (AdminService, `/admin/keys`, `titan keys --admin-token`). */
  adminToken: string;
  /** The auth mode in force now (`--auth`; `auto` follows whether an active API key exists). */
  authMode(): AuthMode;
  /** Re-reads the keyring now (the bin calls it on SIGHUP). */
  reloadKeys(): Promise<boolean>;
  /** Ends health streams, drains calls, closes HTTP. Idempotent. */
  stop(): Promise<void>;
}

/**
 * Starts a coordinator: gRPC CoordinatorService (with health and reflection), the v1 REST API
 * and /metrics, the agent registry with its eviction sweeper, and the persisted keyring.
 * Defaults: `COORDINATOR_DEFAULTS` (`src/config.ts`).
 *
 * @example
 * ```ts
 * const coordinator = await startCoordinator({ dataDir: '/tmp/c', port: 0, httpPort: 0 });
 * console.log(coordinator.address, coordinator.joinToken);
 * await coordinator.stop();
 * ```
 */
export async function startCoordinator(options: CoordinatorOptions): Promise<RunningCoordinator> {
  const o = resolveCoordinatorOptions(options);
  const logger = o.logger ?? createLogger({ service: SERVICE_NAME, level: o.logLevel });

  await mkdir(o.dataDir, { recursive: true, mode: 0o700 });
  const join = await resolveJoinToken(o.dataDir, o.joinToken);
  if (join.source === 'generated') logger.info({ file: join.file }, 'generated a join token; agents need it (TITAN_JOIN_TOKEN)');
  else if (join.source === 'file') logger.info({ file: join.file }, 'using the join token from the data directory');
  const admin = await resolveAdminToken(o.dataDir, o.adminToken);
  if (admin.source === 'generated') logger.info({ file: admin.file }, 'generated an admin token; `titan keys` needs it (TITAN_ADMIN_TOKEN)');
  else if (admin.source === 'file') logger.info({ file: admin.file }, 'using the admin token from the data directory');
  // Durable state (--store): API keys and usage, agent identities, the signing keyring; SQLite in
  // <dataDir> (coordinator.db, keys/), or PostgreSQL shared by every replica (migrated here).
  const store = await openCoordinatorStore({
    kind: o.store,
    dataDir: o.dataDir,
    postgresUrl: o.postgresUrl,
    keyringSecret: o.keyringSecret,
    tokenTtlMs: o.tokenTtlMs,
    logger,
  });
  logger.info({ store: o.store, location: store.location }, 'durable state opened');
  // API keys and their usage; the auth mode follows them live under --auth auto.
  const keys = createApiKeys({ store: store.apiKeys, auth: o.auth, logger });
  await keys.start().catch(async (err: unknown) => {
    await store.close();
    throw err;
  });

  // Agent id → credential bindings; they survive restarts.
  const identities = store.identities;
  const grants = createGrantLedger({ graceMs: Math.max(o.tokenTtlMs, o.heartbeatTimeoutMs) });
  const endpoints = o.verifyAgentEndpoints ? createEndpointVerifier({ ...o.endpointVerification, tls: o.clientTls, logger }) : undefined;
  const keyring = store.keyring;
  keyring.watch(o.keyReloadIntervalMs);
  logger.info({ kid: keyring.current().kid, file: keyring.file }, 'signing key loaded');

  let metricsRef: ReturnType<typeof createCoordinatorMetrics> | undefined;
  // The dashboard's per-second traffic (15 minutes): requests and decisions via the metrics sink, outcomes below.
  const traffic = createTrafficRecorder({ load: () => fleetLoad(registry.list()) });
  // Where prompt prefixes are warm (--prefix-routing): learned from grants, and in precise mode
  // from what agents report their engine's cache holds; an agent that leaves is forgotten.
  const prefixAffinity = createPrefixAffinity({ mode: o.prefixRouting });
  const registry = createAgentRegistry({
    heartbeatTimeoutMs: o.heartbeatTimeoutMs,
    claimWindowMs: o.claimWindowMs,
    breaker: o.breaker,
    onJobOutcome: (_record, outcome) => {
      metricsRef?.jobFinished(outcome.error);
      traffic.jobFinished(outcome);
      // Only outcomes of jobs granted to this very agent get here: charge their tokens to the job's API key.
      keys.charge(outcome);
    },
    onPrefixCacheReport: (record, report) => prefixAffinity.applyReport(record.agentId, report.blockHashes),
    onReservationReleased: (_record, jobId, reason) => {
      metricsRef?.reservationReleased(reason);
      if (reason === 'rejected') keys.forgetJob(jobId);
    },
    onEvicted: (record) => logger.warn({ agentId: record.agentId, heartbeatTimeoutMs: o.heartbeatTimeoutMs }, 'agent evicted: no heartbeat'),
    // With a shared fleet the database decides who is silent (any replica evicts, every replica follows).
    evictSilentAgents: store.postgres === undefined,
  });
  // --store postgres: the registry's shared facts (agents, health, home replica, breaker,
  // reservations) live in PostgreSQL; every replica keeps a copy of every agent.
  const fleet = store.postgres
    ? openPostgresFleetStore({
        store: store.postgres,
        registry,
        heartbeatTimeoutMs: o.heartbeatTimeoutMs,
        claimWindowMs: o.claimWindowMs,
        flushIntervalMs: o.fleetFlushIntervalMs,
        logger,
      })
    : undefined;
  try {
    await fleet?.start();
  } catch (err) {
    await fleet?.stop();
    await keys.stop();
    await store.close();
    throw err;
  }
  const metrics = recordTraffic(createCoordinatorMetrics(registry), traffic);
  metricsRef = metrics;
  registry.startSweeper();

  registry.watch((record, removed) => removed && prefixAffinity.forget(record.agentId));

  // Every grant is recorded, so only outcomes of jobs really handed to an agent count.
  const route = recordGrants(
    createRequestRouter({
      registry,
      scheduler: createScheduler({ weights: o.weights, prefixLoadCap: o.prefixLoadCap }),
      keyring,
      metrics,
      limits: { maxTokensLimit: o.maxTokensLimit, maxPromptBytes: o.maxPromptBytes, allowedModels: new Set(o.allowedModels) },
      issuer: o.issuer,
      tokenTtlMs: o.tokenTtlMs,
      busyRetryHintMs: o.busyRetryHintMs,
      maxClientShare: o.maxClientShare,
      keys,
      prefixAffinity,
      fleet,
      logger,
    }),
    grants,
  );

  const server = createServiceServer({
    logger,
    host: o.host,
    port: o.port,
    tls: o.tls,
    protoVersionPolicy: o.protoVersionPolicy,
    shutdownTimeoutMs: o.shutdownTimeoutMs,
  });
  server.add(
    CoordinatorServiceDefinition,
    createCoordinatorService({
      registry,
      keyring,
      metrics,
      route,
      joinToken: join.token,
      issuer: o.issuer,
      heartbeatIntervalMs: o.heartbeatIntervalMs,
      startedAt: Date.now(),
      shutdownSignal: server.shutdownSignal,
      logger,
      identities,
      grants,
      endpoints,
      fleet,
      onSharedGrant: (grant) => {
        if (grant.keyId !== undefined) keys.adoptJob(grant.jobId, grant.keyId, grant.tokenExpiresAtMs);
      },
    }),
  );
  server.add(AdminServiceDefinition, createAdminService({ keys, adminToken: admin.token }));
  // OpenAI requests relayed to agents (relay mode); stop() waits for streams in progress.
  const relay = createAgentRelay();
  const http = createHttpServer({
    registry,
    metrics,
    route,
    logger,
    requestTimeoutMs: o.httpRequestTimeoutMs,
    openAiMode: o.openAiMode,
    openAiDefaultMaxTokens: o.maxTokensLimit,
    openAiRelay: relay,
    // Listing models only identifies the key: no quota is taken.
    openAiAuthenticate: (authorization) => keys.authenticate(authorization, { quota: false }),
  });

  registerAdminRoutes(http, { keys, adminToken: admin.token, logger });
  // The fleet dashboard at / (read-only; behind the admin credential while auth is on).
  const dashboard = createDashboard({
    registry,
    keys,
    adminToken: admin.token,
    traffic,
    heartbeatTimeoutMs: o.heartbeatTimeoutMs,
    logger,
    instanceManager: o.instanceManager,
    instanceManagerTls: o.clientTls,
  });
  dashboard.register(http);
  dashboard.start();

  let stopping: Promise<void> | undefined;
  /** Stops everything started above, once: timers and watchers, then gRPC and HTTP, then the store. */
  const stop = () =>
    (stopping ??= (async () => {
      registry.stop();
      keyring.close();
      endpoints?.stop();
      grants.stop();
      await Promise.all([dashboard.stop(), server.shutdown(), closeHttpServer(http, { graceMs: o.shutdownTimeoutMs, busy: () => relay.active > 0 })]);
      relay.close();
      // After the health streams ended (their agents are written offline unless re-homed elsewhere).
      await fleet?.stop();
      await keys.stop();
      await store.close();
    })());

  let listened: { port: number; address: string };
  let httpPort: number;
  try {
    listened = await server.listen();
    await http.listen({ host: o.host, port: o.httpPort });
    const addr = http.server.address();
    httpPort = typeof addr === 'object' && addr ? addr.port : o.httpPort;
  } catch (err) {
    await stop();
    throw err;
  }
  logger.info({ httpPort, host: o.host }, 'http listening');

  return {
    port: listened.port,
    httpPort,
    address: listened.address,
    joinToken: join.token,
    adminToken: admin.token,
    authMode: () => keys.mode(),
    reloadKeys: () => keyring.reload(),
    stop,
  };
}

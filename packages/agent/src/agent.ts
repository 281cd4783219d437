import { mkdir } from 'node:fs/promises';
import os from 'node:os';
import { AgentServiceDefinition } from '@titancompute/protocol';
import Fastify from 'fastify';
import { closeHttpServer, createLogger, createServiceServer, type Logger } from '@titancompute/server-kit';
import { createJobSlots, type JobSlots } from './capacity/job-slots.js';
import { startAgentOptionsSchema, type ResolvedAgentOptions, type StartAgentOptions } from './config.js';
import { defaultAgentId, resolveEndpoint } from './endpoint.js';
import { createEngine } from './engines/create-engine.js';
import type { Engine } from './engines/engine.js';
import { AgentConfigError } from './errors.js';
import { createAgentHttpServer, metricsRoute } from './http/http-server.js';
import { loadAgentCredential } from './identity/agent-credential.js';
import { parseCoordinatorAddresses } from './links/coordinator-addresses.js';
import { createCoordinatorLink, type CoordinatorLink } from './links/coordinator-link.js';
import { createInstanceManagerLink, type InstanceManagerLink } from './links/instance-manager-link.js';
import { createAgentMetrics } from './metrics/agent-metrics.js';
import { createAgentService } from './service/agent-service.js';
import { createJobRunner } from './service/job-runner.js';
import { createJobTracker, type JobTracker } from './service/job-tracker.js';
import { createShutdown } from './shutdown.js';
import { createStatsSampler, type StatsSampler } from './stats/system-stats.js';
import { openPersistentReplayCache } from './tokens/replay-cache.js';
import { createTokenVerifier, type TokenVerifier } from './tokens/token-verifier.js';

export type { StartAgentOptions } from './config.js';

/** A running agent. */
export interface RunningAgent {
  port: number;
  agentId: string;
  /** `host:port` clients dial. */
  endpoint: string;
  /** Port of the OpenAI-compatible HTTP routes (`/v1/chat/completions`, `/v1/completions`, `/v1/embeddings`, `/v1/models`, `/health`). */
  httpPort: number;
  /** `host:port` of those routes as advertised to the coordinator (AgentRegistration.http_endpoint). */
  httpEndpoint: string;
  /** Port of `GET /metrics` (Prometheus): `httpPort` unless `metricsPort` named another. */
  metricsPort: number;
  /** Drains (no new work, in-flight streams finish up to the drain timeout), deregisters, stops. Idempotent. */
  stop(reason?: string): Promise<void>;
  /** Resolves with the reason once the agent has stopped (by `stop()` or the instance manager). */
  readonly closed: Promise<string>;
  /**
   * `host:port` of the coordinator the agent is registered with and streams to now (its home,
   * one of `coordinator`'s addresses); undefined while it has none.
   */
  readonly coordinator: string | undefined;
}

/** The options with their defaults, or an {@link AgentConfigError} naming the first bad one. */
function resolveOptions(options: StartAgentOptions): ResolvedAgentOptions {
  const parsed = startAgentOptionsSchema.safeParse(options);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new AgentConfigError(`invalid agent option ${issue?.path.join('.') ?? ''}: ${issue?.message ?? ''}`, { option: issue?.path.join('.') });
  }
  // One host:port, or several comma-separated: AgentConfigError naming a bad entry, before anything starts.
  parseCoordinatorAddresses(parsed.data.coordinator);
  return { ...options, ...parsed.data };
}

/** The engine the options name (or the one they carry). */
function engineFor(o: ResolvedAgentOptions): Engine {
  if (typeof o.engine === 'object') return o.engine;
  return createEngine(o.engine, {
    modelPath: o.modelPath,
    modelName: o.modelName,
    supportedModels: o.supportedModels,
    preloadModels: o.preloadModels,
    threads: o.threads,
    contextSize: o.contextSize,
    maxConcurrentJobs: o.maxConcurrentJobs,
    ollamaHost: o.ollamaHost,
    openaiUrl: o.openaiUrl,
    openaiApiKey: o.openaiApiKey,
    openaiApi: o.openaiApi,
    timeouts: {
      ...(o.engineIdleTimeoutMs ? { idleTimeoutMs: o.engineIdleTimeoutMs } : {}),
      ...(o.engineRequestTimeoutMs ? { requestTimeoutMs: o.engineRequestTimeoutMs } : {}),
    },
  });
}

/** What the coordinator link reads from the running agent. */
interface AgentView {
  agentId: string;
  endpoint: string;
  httpEndpoint: string;
  credential: string;
  engine: Engine;
  stats: StatsSampler;
  slots: JobSlots;
  tracker: JobTracker;
  verifier: TokenVerifier;
  draining: () => boolean;
  logger: Logger;
}

/** The coordinator link of this agent: its registration, its health snapshots and job reports. */
function linkToCoordinator(o: ResolvedAgentOptions, a: AgentView): CoordinatorLink {
  const { engine, stats, slots, tracker } = a;
  return createCoordinatorLink({
    address: o.coordinator,
    joinToken: o.joinToken,
    credential: a.credential,
    agentId: a.agentId,
    tls: o.clientTls,
    heartbeatIntervalMs: o.heartbeatIntervalMs,
    ...(o.registerBackoffInitialMs ? { backoffInitialMs: o.registerBackoffInitialMs } : {}),
    ...(o.registerBackoffMaxMs ? { backoffMaxMs: o.registerBackoffMaxMs } : {}),
    logger: a.logger,
    registration: () => {
      const m = stats.current();
      return {
        agentId: a.agentId,
        endpoint: a.endpoint,
        // Where the coordinator relays or redirects OpenAI-compatible requests.
        httpEndpoint: a.httpEndpoint,
        totalVramMb: m.totalVramMb,
        totalRamMb: m.totalRamMb,
        maxJobs: o.maxConcurrentJobs,
        maxQueue: o.maxQueue,
        supportedModels: [...engine.models],
        capabilities: {
          engine: engine.name,
          gpus: String(m.gpus.length),
          cpus: String(os.cpus().length),
          // The coordinator sends /v1/embeddings only to agents whose engine can embed.
          ...(engine.embed ? { embeddings: 'true' } : {}),
        },
        gpus: m.gpus,
        engine: engine.name,
      };
    },
    snapshot: () => {
      const m = stats.current();
      return {
        freeVramMb: m.freeVramMb,
        freeRamMb: m.freeRamMb,
        totalRamMb: m.totalRamMb,
        runningJobs: slots.running,
        queuedJobs: slots.queued,
        cpuPercent: m.cpuPercent,
        gpus: m.gpus,
        activeJobIds: tracker.activeJobIds(),
        draining: a.draining(),
      };
    },
    takeCompleted: () => tracker.takeCompleted(),
    takeStarted: () => tracker.takeStarted(),
    takeRejected: () => tracker.takeRejected(),
    // Only engines that keep their own prefix cache (llama-cpp) say what it holds.
    ...(engine.prefixCache ? { prefixCache: () => engine.prefixCache?.() } : {}),
    onRegistered: () => void a.verifier.refresh(),
  });
}

/**
 * Starts an agent: loads the engine, serves AgentService (plus health and reflection) and, on
 * its HTTP port, the OpenAI-compatible `/v1/*` routes (same jobs, same session tokens),
 * registers with the coordinator (one of several, failing over between them) and keeps its health stream, and, when configured, reports to
 * the instance manager (whose healthy=false drains and stops the agent: `closed` resolves).
 *
 * @example
 * ```ts
 * const agent = await startAgent({ port: 0, coordinator: '127.0.0.1:50051', joinToken: 'secret' });
 * console.log(agent.endpoint, agent.httpEndpoint, agent.agentId);
 * await agent.stop();
 * ```
 */
export async function startAgent(options: StartAgentOptions): Promise<RunningAgent> {
  const o = resolveOptions(options);
  if (o.dataDir !== undefined) await mkdir(o.dataDir, { recursive: true, mode: 0o700 });
  // The agent's own secret: it proves to the coordinator that this process is this agent id.
  const credential = await loadAgentCredential(o.dataDir);
  const logger = o.logger ?? createLogger({ service: 'titan-agent', level: o.logLevel });
  const engine = engineFor(o);

  let state: 'starting' | 'healthy' | 'draining' = 'starting';
  let agentId = o.agentId ?? '';
  const stats = createStatsSampler({
    nvidiaSmi: { ...(o.nvidiaSmiPath ? { binary: o.nvidiaSmiPath } : {}), ...(o.nvidiaSmiTimeoutMs !== undefined ? { timeoutMs: o.nvidiaSmiTimeoutMs } : {}) },
    logger,
  });
  const slots = createJobSlots({ maxConcurrent: o.maxConcurrentJobs, maxQueue: o.maxQueue });
  const tracker = createJobTracker();
  let link: CoordinatorLink | undefined;
  // Used token ids outlive restarts when there is a data dir (recorded before a stream starts).
  const replayCache = o.dataDir !== undefined ? openPersistentReplayCache({ dataDir: o.dataDir }) : undefined;
  const verifier = createTokenVerifier({
    get agentId() {
      return agentId;
    },
    fetchKeys: () => {
      if (!link) throw new Error('coordinator link not started');
      return link.getPublicKey();
    },
    ...(o.tokenIssuer ? { issuer: o.tokenIssuer } : {}),
    ...(o.keyRefetchIntervalMs !== undefined ? { refetchIntervalMs: o.keyRefetchIntervalMs } : {}),
    ...(replayCache ? { replayCache } : {}),
    ...(o.requirePromptBinding !== undefined ? { requirePromptBinding: o.requirePromptBinding } : {}),
    logger,
  });
  const metrics = createAgentMetrics({ engine: engine.name, ...(engine.prefixCache ? { prefixCache: () => engine.prefixCache?.() } : {}) });
  // One job pipeline for every transport: gRPC StreamInference and the HTTP /v1 routes adapt it.
  const runner = createJobRunner({
    metrics,
    engine,
    verifier,
    slots,
    tracker,
    limits: { maxPromptBytes: o.maxPromptBytes, maxTokensLimit: o.maxTokensLimit },
    state: () => state,
    jobEndReported: () => link?.whenAcked(250) ?? Promise.resolve(),
    logger,
  });
  const service = createAgentService({ agentId: () => agentId, engine, runner, slots, tracker, stats, state: () => state });
  const server = createServiceServer({ logger, host: o.host, port: o.port, tls: o.tls, protoVersionPolicy: o.protoVersionPolicy, shutdownTimeoutMs: 2000 });
  server.add(AgentServiceDefinition, service.implementation);
  const http = createAgentHttpServer({
    runner,
    engine,
    agentId: () => agentId,
    state: () => state,
    limits: { maxPromptBytes: o.maxPromptBytes, maxTokensLimit: o.maxTokensLimit },
    logger,
    ...(o.metricsPort === undefined ? { metrics: metrics.prometheus } : {}),
    coordinator: () => link?.home,
  });
  // A separate listener only when --metrics-port names another port than the HTTP routes'.
  const metricsHttp = o.metricsPort === undefined ? undefined : Fastify({ logger: false });
  metricsHttp?.register(metricsRoute(metrics.prometheus));

  await Promise.all([engine.load(), stats.refreshGpus()]).catch((err: unknown) => {
    replayCache?.close();
    throw err;
  });
  let listened: { port: number };
  try {
    listened = await server.listen();
  } catch (err) {
    await engine.close();
    replayCache?.close();
    throw err;
  }
  let httpPort: number;
  try {
    await http.listen({ host: o.host, port: o.httpPort });
    const address = http.server.address();
    httpPort = typeof address === 'object' && address ? address.port : o.httpPort;
    logger.info({ host: o.host, httpPort }, 'http listening');
  } catch (err) {
    await server.shutdown();
    await engine.close();
    replayCache?.close();
    throw err;
  }
  // Every served model shows in /metrics from the first scrape.
  for (const model of engine.models) metrics.model(model);
  let metricsPort = httpPort;
  try {
    if (metricsHttp) {
      await metricsHttp.listen({ host: o.host, port: o.metricsPort });
      const address = metricsHttp.server.address();
      metricsPort = typeof address === 'object' && address ? address.port : (o.metricsPort ?? 0);
      logger.info({ host: o.host, metricsPort }, 'metrics listening');
    }
  } catch (err) {
    await Promise.all([server.shutdown(), closeHttpServer(http)]);
    await engine.close();
    replayCache?.close();
    throw err;
  }
  const port = listened.port;
  if (!agentId) agentId = defaultAgentId(port);
  const endpoint = resolveEndpoint({ host: o.host, port, publicHost: o.publicHost, coordinator: o.coordinator });
  const httpEndpoint = o.httpEndpoint ?? resolveEndpoint({ host: o.host, port: httpPort, publicHost: o.publicHost, coordinator: o.coordinator });
  state = 'healthy';
  stats.start(Math.max(1000, o.heartbeatIntervalMs));

  link = linkToCoordinator(o, {
    agentId,
    endpoint,
    httpEndpoint,
    credential: credential.value,
    engine,
    stats,
    slots,
    tracker,
    verifier,
    draining: () => state === 'draining',
    logger,
  });
  const coordinatorLink = link;
  // A job's end (or a refused token) goes to the coordinator at once, before the client hears of
  // it, so the freed slot is never seen busy; starts are coalesced for a few ms.
  tracker.onChange((change) => (change === 'start' ? coordinatorLink.nudge() : coordinatorLink.flush()));
  coordinatorLink.start();

  let im: InstanceManagerLink | undefined;
  const { stop, closed } = createShutdown({
    logger,
    drainTimeoutMs: o.drainTimeoutMs,
    markDraining: () => {
      state = 'draining';
    },
    // Both servers: NOT_SERVING and draining answers first, closed together at the end.
    server: {
      setServing: (serving) => server.setServing(serving),
      shutdown: async () => {
        await Promise.all([server.shutdown(), closeHttpServer(http), metricsHttp ? closeHttpServer(metricsHttp) : undefined]);
      },
    },
    coordinatorLink,
    instanceManagerLink: () => im,
    service,
    slots,
    tracker,
    stats,
    replayCache,
    engine,
  });
  if (o.instanceManager) {
    im = createInstanceManagerLink({
      address: o.instanceManager,
      tls: o.clientTls,
      agentId,
      endpoint,
      port,
      engine: engine.name,
      openaiUrl: engine.name === 'openai' ? o.openaiUrl : undefined,
      models: engine.models,
      intervalMs: o.imHealthIntervalMs,
      stats: () => stats.current(),
      totals: () => tracker.totals,
      onStopRequested: (message) => void stop(`instance manager: ${message}`),
      logger,
    });
    im.start();
  }
  if (credential.source === 'generated')
    logger.info({ file: credential.file }, "generated this agent's credential; keep the data dir (a new credential for the same agent id is refused)");
  logger.info(
    { agentId, endpoint, httpEndpoint, engine: engine.name, models: engine.models, maxConcurrentJobs: o.maxConcurrentJobs, maxQueue: o.maxQueue },
    'agent ready',
  );
  return {
    port,
    agentId,
    endpoint,
    httpPort,
    httpEndpoint,
    metricsPort,
    stop,
    closed,
    get coordinator() {
      return coordinatorLink.home;
    },
  };
}

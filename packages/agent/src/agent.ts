import { mkdir } from 'node:fs/promises';
import os from 'node:os';
import { randomUUID } from 'node:crypto';
import { z } from 'zod';
import { AgentServiceDefinition, type ClientTlsOptions, type ProtoVersionPolicy } from '@titancompute/protocol';
import { createLogger, createServiceServer, LOG_LEVELS, type Logger, type ServerTlsOptions } from '@titancompute/server-kit';
import { createJobSlots } from './capacity/job-slots.js';
import { createEngine } from './engines/create-engine.js';
import { ENGINE_NAMES, type Engine } from './engines/engine.js';
import { AgentConfigError } from './errors.js';
import { loadAgentCredential } from './identity/agent-credential.js';
import { createCoordinatorLink, type CoordinatorLink } from './links/coordinator-link.js';
import { createInstanceManagerLink, type InstanceManagerLink } from './links/instance-manager-link.js';
import { createAgentService } from './service/agent-service.js';
import { createJobTracker } from './service/job-tracker.js';
import { createStatsSampler } from './stats/system-stats.js';
import { openPersistentReplayCache } from './tokens/replay-cache.js';
import { createTokenVerifier } from './tokens/token-verifier.js';

/** Options of {@link startAgent}. Every field but `joinToken` has a default. */
export interface StartAgentOptions {
  /** 1-128 characters of [A-Za-z0-9._:-]. Default `<hostname>-<port>`. */
  agentId?: string;
  /** Listen address. Default `0.0.0.0`. */
  host?: string;
  /** gRPC port; 0 picks a free one. Default 50052. */
  port?: number;
  /** Host clients dial (endpoint = publicHost:port). Default: the listen host, or for a wildcard host 127.0.0.1 when the coordinator is on loopback, else the machine's hostname. */
  publicHost?: string;
  /** Coordinator `host:port`. Default `localhost:50051`. */
  coordinator?: string;
  /** Join token sent as `authorization: Bearer …` to RegisterAgent/ReportHealth/DeregisterAgent. */
  joinToken: string;
  /**
   * Directory for the agent's own state (its credential, used token ids); created with mode 0700.
   * When unset the state lives in memory only and is lost on exit (tests).
   */
  dataDir?: string;
  /** Engine name or an {@link Engine} object. Default `llama-cpp`. */
  engine?: (typeof ENGINE_NAMES)[number] | Engine;
  /** GGUF file for llama-cpp. Default: the bundled tiny model. */
  modelPath?: string;
  /** Name the llama-cpp model is served under. Default: the file's basename without `.gguf`. */
  modelName?: string;
  /** Model names to advertise (SUPPORTED_MODELS); overrides what the engine lists. */
  supportedModels?: string[];
  /** Ollama models to pull at start (PRELOAD_MODELS). */
  preloadModels?: string[];
  /** llama.cpp CPU threads. Default: every core but one (see `defaultLlamaThreads`). */
  threads?: number;
  /** llama.cpp context size per sequence. */
  contextSize?: number;
  /** Ollama URL. Default `http://localhost:11434`. */
  ollamaHost?: string;
  /** OpenAI-compatible server URL (engine `openai`). */
  openaiUrl?: string;
  openaiApiKey?: string;
  /** `completions` (default) or `chat`. */
  openaiApi?: 'completions' | 'chat';
  /** Idle/total deadlines of HTTP engines, ms. Defaults 60 s / 10 min. */
  engineIdleTimeoutMs?: number;
  engineRequestTimeoutMs?: number;
  /** Jobs generating at once. Default 4. */
  maxConcurrentJobs?: number;
  /** Jobs waiting beyond that. Default 2 × maxConcurrentJobs. */
  maxQueue?: number;
  /** Health update interval until the coordinator says otherwise. Default 2000 ms. */
  heartbeatIntervalMs?: number;
  /** Registration retry backoff: first delay and cap. Defaults 250 ms / 10 s. */
  registerBackoffInitialMs?: number;
  registerBackoffMaxMs?: number;
  /** Instance manager `host:port`; the link is off when unset. */
  instanceManager?: string;
  /** TryHealthCheck/metrics interval. Default 5000 ms. */
  imHealthIntervalMs?: number;
  /** nvidia-smi binary. Default `nvidia-smi`. */
  nvidiaSmiPath?: string;
  /** nvidia-smi timeout. Default 5000 ms. */
  nvidiaSmiTimeoutMs?: number;
  /** How long `stop()` lets in-flight streams finish before cutting them. Default 30 s. */
  drainTimeoutMs?: number;
  /** Largest prompt in bytes. Default 32768. */
  maxPromptBytes?: number;
  /** Largest max_tokens. Default 4096. */
  maxTokensLimit?: number;
  /** Expected token issuer until GetPublicKey says. Default `titancompute-coordinator`. */
  tokenIssuer?: string;
  /** Minimum time between key refetches on unknown key ids. Default 1000 ms. */
  keyRefetchIntervalMs?: number;
  /** Refuse session tokens without a `prompt_sha256` claim (from a coordinator older than this agent). Default false. */
  requirePromptBinding?: boolean;
  logger?: Logger;
  /** Used when no `logger` is given. Default `info`. */
  logLevel?: (typeof LOG_LEVELS)[number];
  protoVersionPolicy?: ProtoVersionPolicy;
  /** Server TLS (mTLS with a CA). */
  tls?: ServerTlsOptions;
  /** TLS of outgoing calls (coordinator, instance manager). */
  clientTls?: ClientTlsOptions;
}

/** A running agent. */
export interface RunningAgent {
  port: number;
  agentId: string;
  /** `host:port` clients dial. */
  endpoint: string;
  /** Drains (no new work, in-flight streams finish up to the drain timeout), deregisters, stops. Idempotent. */
  stop(reason?: string): Promise<void>;
  /** Resolves with the reason once the agent has stopped (by `stop()` or the instance manager). */
  readonly closed: Promise<string>;
}

const optionsSchema = z.object({
  agentId: z.string().regex(/^[A-Za-z0-9._:-]{1,128}$/, 'agentId must be 1-128 characters of [A-Za-z0-9._:-]').optional(),
  host: z.string().min(1).default('0.0.0.0'),
  port: z.number().int().min(0).max(65535).default(50052),
  publicHost: z.string().min(1).optional(),
  coordinator: z.string().min(1).default('localhost:50051'),
  joinToken: z.string().min(1, 'joinToken is required'),
  maxConcurrentJobs: z.number().int().min(1).max(1024).default(4),
  maxQueue: z.number().int().min(0).max(100_000).optional(),
  heartbeatIntervalMs: z.number().int().min(50).default(2000),
  drainTimeoutMs: z.number().int().min(0).default(30_000),
  maxPromptBytes: z.number().int().min(1).default(32 * 1024),
  maxTokensLimit: z.number().int().min(1).default(4096),
  imHealthIntervalMs: z.number().int().min(50).default(5000),
});

const isLoopback = (address: string) => /^(localhost|127\.|\[::1\]|::1)/.test(address.replace(/^(https?|grpcs?):\/\//, ''));

/**
 * Starts an agent: loads the engine, serves AgentService (plus health and reflection),
 * registers with the coordinator and keeps its health stream, and, when configured, reports to
 * the instance manager (whose healthy=false drains and stops the agent: `closed` resolves).
 *
 * @example
 * ```ts
 * const agent = await startAgent({ port: 0, coordinator: '127.0.0.1:50051', joinToken: 'secret' });
 * console.log(agent.endpoint, agent.agentId);
 * await agent.stop();
 * ```
 */
export async function startAgent(options: StartAgentOptions): Promise<RunningAgent> {
  const parsed = optionsSchema.safeParse(options);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new AgentConfigError(`invalid agent option ${issue?.path.join('.') ?? ''}: ${issue?.message ?? ''}`, { option: issue?.path.join('.') });
  }
  const o = parsed.data;
  if (options.dataDir !== undefined) await mkdir(options.dataDir, { recursive: true, mode: 0o700 });
  // The agent's own secret: it proves to the coordinator that this process is this agent id.
  const credential = await loadAgentCredential(options.dataDir);
  const logger = options.logger ?? createLogger({ service: 'titan-agent', level: options.logLevel ?? 'info' });
  const maxQueue = o.maxQueue ?? 2 * o.maxConcurrentJobs;
  const engine: Engine =
    typeof options.engine === 'object'
      ? options.engine
      : createEngine(options.engine ?? 'llama-cpp', {
          modelPath: options.modelPath,
          modelName: options.modelName,
          supportedModels: options.supportedModels,
          preloadModels: options.preloadModels,
          threads: options.threads,
          contextSize: options.contextSize,
          maxConcurrentJobs: o.maxConcurrentJobs,
          ollamaHost: options.ollamaHost,
          openaiUrl: options.openaiUrl,
          openaiApiKey: options.openaiApiKey,
          openaiApi: options.openaiApi,
          timeouts: {
            ...(options.engineIdleTimeoutMs ? { idleTimeoutMs: options.engineIdleTimeoutMs } : {}),
            ...(options.engineRequestTimeoutMs ? { requestTimeoutMs: options.engineRequestTimeoutMs } : {}),
          },
        });

  let state: 'starting' | 'healthy' | 'draining' = 'starting';
  let agentId = o.agentId ?? '';
  const stats = createStatsSampler({ nvidiaSmi: { ...(options.nvidiaSmiPath ? { binary: options.nvidiaSmiPath } : {}), timeoutMs: options.nvidiaSmiTimeoutMs ?? 5000 }, logger });
  const slots = createJobSlots({ maxConcurrent: o.maxConcurrentJobs, maxQueue });
  const tracker = createJobTracker();
  let link: CoordinatorLink | undefined;
  // Used token ids outlive restarts when there is a data dir (recorded before a stream starts).
  const replayCache = options.dataDir !== undefined ? openPersistentReplayCache({ dataDir: options.dataDir }) : undefined;
  const verifier = createTokenVerifier({
    get agentId() {
      return agentId;
    },
    fetchKeys: () => {
      if (!link) throw new Error('coordinator link not started');
      return link.getPublicKey();
    },
    ...(options.tokenIssuer ? { issuer: options.tokenIssuer } : {}),
    ...(options.keyRefetchIntervalMs !== undefined ? { refetchIntervalMs: options.keyRefetchIntervalMs } : {}),
    ...(replayCache ? { replayCache } : {}),
    ...(options.requirePromptBinding !== undefined ? { requirePromptBinding: options.requirePromptBinding } : {}),
    logger,
  });
  const service = createAgentService({
    agentId: () => agentId,
    engine,
    verifier,
    slots,
    tracker,
    stats,
    limits: { maxPromptBytes: o.maxPromptBytes, maxTokensLimit: o.maxTokensLimit },
    state: () => state,
    jobEndReported: () => link?.whenAcked(250) ?? Promise.resolve(),
    logger,
  });
  const server = createServiceServer({
    logger,
    host: o.host,
    port: o.port,
    tls: options.tls,
    protoVersionPolicy: options.protoVersionPolicy ?? 'strict',
    shutdownTimeoutMs: 2000,
  });
  server.add(AgentServiceDefinition, service.implementation);

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
  const port = listened.port;
  if (!agentId) agentId = `${os.hostname().replace(/[^A-Za-z0-9._:-]/g, '-').slice(0, 100) || randomUUID().slice(0, 8)}-${port}`;
  const wildcard = o.host === '0.0.0.0' || o.host === '::' || o.host === '[::]';
  const publicHost = o.publicHost ?? (wildcard ? (isLoopback(o.coordinator) ? '127.0.0.1' : os.hostname()) : o.host);
  const endpoint = `${publicHost.includes(':') && !publicHost.startsWith('[') ? `[${publicHost}]` : publicHost}:${port}`;
  state = 'healthy';
  stats.start(Math.max(1000, o.heartbeatIntervalMs));

  link = createCoordinatorLink({
    address: o.coordinator,
    joinToken: o.joinToken,
    credential: credential.value,
    agentId,
    tls: options.clientTls,
    heartbeatIntervalMs: o.heartbeatIntervalMs,
    ...(options.registerBackoffInitialMs ? { backoffInitialMs: options.registerBackoffInitialMs } : {}),
    ...(options.registerBackoffMaxMs ? { backoffMaxMs: options.registerBackoffMaxMs } : {}),
    logger,
    registration: () => {
      const m = stats.current();
      return {
        agentId,
        endpoint,
        totalVramMb: m.totalVramMb,
        totalRamMb: m.totalRamMb,
        maxJobs: o.maxConcurrentJobs,
        maxQueue,
        supportedModels: [...engine.models],
        capabilities: { engine: engine.name, gpus: String(m.gpus.length), cpus: String(os.cpus().length) },
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
        draining: state === 'draining',
      };
    },
    takeCompleted: () => tracker.takeCompleted(),
    takeStarted: () => tracker.takeStarted(),
    takeRejected: () => tracker.takeRejected(),
    onRegistered: () => void verifier.refresh(),
  });
  // A job's end (or a refused token) goes to the coordinator at once, before the client hears of
  // it, so the freed slot is never seen busy; starts are coalesced for a few ms.
  tracker.onChange((change) => (change === 'start' ? link?.nudge() : link?.flush()));
  link.start();

  let resolveClosed!: (reason: string) => void;
  const closed = new Promise<string>((resolve) => {
    resolveClosed = resolve;
  });
  let stopping: Promise<void> | undefined;
  let im: InstanceManagerLink | undefined;

  const stop = (reason = 'shutdown'): Promise<void> => {
    stopping ??= (async () => {
      logger.info({ reason, running: slots.running, queued: slots.queued, drainTimeoutMs: o.drainTimeoutMs }, 'draining: taking no new work');
      state = 'draining';
      server.setServing(false);
      im?.stop();
      await link?.announceDraining(1000);
      let timer: NodeJS.Timeout | undefined;
      const drained = await Promise.race([
        tracker.idle().then(() => true),
        new Promise<boolean>((resolve) => {
          timer = setTimeout(() => resolve(false), o.drainTimeoutMs);
        }),
      ]);
      clearTimeout(timer);
      if (!drained) {
        logger.warn({ running: slots.running, queued: slots.queued }, 'drain deadline reached; cancelling the remaining streams');
        service.abortAll('agent drain deadline reached');
        await Promise.race([tracker.idle(), new Promise((r) => setTimeout(r, 2000))]);
      }
      await link?.stop(reason);
      stats.stop();
      await server.shutdown();
      replayCache?.close();
      await engine.close();
      logger.info({ reason }, 'agent stopped');
      resolveClosed(reason);
    })();
    return stopping;
  };

  if (options.instanceManager) {
    im = createInstanceManagerLink({
      address: options.instanceManager,
      tls: options.clientTls,
      agentId,
      endpoint,
      port,
      engine: engine.name,
      openaiUrl: engine.name === 'openai' ? options.openaiUrl : undefined,
      models: engine.models,
      intervalMs: o.imHealthIntervalMs,
      stats: () => stats.current(),
      totals: () => tracker.totals,
      onStopRequested: (message) => void stop(`instance manager: ${message}`),
      logger,
    });
    im.start();
  }
  if (credential.source === 'generated') logger.info({ file: credential.file }, 'generated this agent\'s credential; keep the data dir (a new credential for the same agent id is refused)');
  logger.info({ agentId, endpoint, engine: engine.name, models: engine.models, maxConcurrentJobs: o.maxConcurrentJobs, maxQueue }, 'agent ready');
  return { port, agentId, endpoint, stop, closed };
}

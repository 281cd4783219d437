import os from 'node:os';
import { createClientFactory, type Channel } from 'nice-grpc';
import { createProtoVersionClientMiddleware, createTitanChannel, instanceManager, type ClientTlsOptions } from '@titancompute/protocol';
import type { Logger } from '@titancompute/server-kit';
import type { MachineStats } from '../stats/system-stats.js';
import type { JobTotals } from '../service/job-tracker.js';
import { backoffDelay } from '../util/abort.js';
import { createKeepAliveStream, isUnimplemented, type KeepAliveStream } from './keep-alive-stream.js';

/** Options of {@link createInstanceManagerLink}. */
export interface InstanceManagerLinkOptions {
  /** `host:port` of the instance manager. */
  address: string;
  tls?: ClientTlsOptions | undefined;
  agentId: string;
  /** `host:port` clients dial. */
  endpoint: string;
  port: number;
  engine: string;
  /** OpenAI-compatible URL to register as VLLM_OPENAI_COMPATIBLE (engine `openai`). */
  openaiUrl?: string | undefined;
  models: readonly string[];
  /** Health check (and metrics) interval. Default 5000 ms. */
  intervalMs?: number;
  /**
   * First retry after the instance manager could not be reached; each further failure doubles
   * it (±20 % jitter) up to {@link retryMaxMs}. Default min(1000, intervalMs).
   */
  retryInitialMs?: number;
  /**
   * Cap of the retry delay. Default min(15 000, 3 × intervalMs) ms: 15 s with the default 5 s
   * interval, half the instance manager's default stale timeout, so the agent is back within the
   * grace period an instance manager gives after an outage.
   */
  retryMaxMs?: number;
  stats: () => MachineStats;
  totals: () => Readonly<JobTotals>;
  /**
   * The instance manager says this agent was killed (TryKillInstance named it or an ancestor;
   * or a v1 instance manager answered healthy=false): the agent must drain and exit.
   */
  onStopRequested: (message: string) => void;
  logger: Logger;
}

/** The agent's registration, health checks and metrics at the instance manager. */
export interface InstanceManagerLink {
  start(): void;
  stop(): void;
}

const { HealthStatus } = instanceManager;

/**
 * Creates an {@link InstanceManagerLink}: TryAddInstance (type INFERENCE_AGENT), TryAddService
 * (AGENT_GRPC, and VLLM_OPENAI_COMPATIBLE for the openai engine), then every interval a health
 * check plus Post{Gpu,System,Llm}Metrics. Health checks go over one long-lived
 * TryHealthCheckStream (reopened after it broke); an instance manager without it (UNIMPLEMENTED)
 * gets unary TryHealthCheck calls instead, for the rest of the link's life.
 *
 * Only a kill stops the agent: TryHealthCheck answering `status` KILLED (a TryKillInstance of
 * this agent or of an ancestor), or healthy=false from a v1 instance manager (no `status`).
 * STALE or UNKNOWN (e.g. the instance manager lost its state) → the agent registers again (a
 * new incarnation) and keeps serving. An unreachable instance manager → the agent keeps
 * serving, retries with exponential backoff (logged once per outage, not per attempt) and,
 * when the instance manager answers again, registers again with TryAddInstance and its
 * services before the next health check.
 */
export function createInstanceManagerLink(options: InstanceManagerLinkOptions): InstanceManagerLink {
  const { logger } = options;
  const intervalMs = options.intervalMs ?? 5000;
  const retryInitialMs = options.retryInitialMs ?? Math.min(1000, intervalMs);
  const retryMaxMs = Math.max(retryInitialMs, options.retryMaxMs ?? Math.min(15_000, 3 * intervalMs));
  const channel: Channel = createTitanChannel(options.address, {
    ...(options.tls ? { tls: options.tls } : {}),
    // grpc-js backs off its own reconnects up to 120 s by default: keep them as eager as ours,
    // so the agent is back soon after the instance manager returns.
    channelOptions: { 'grpc.initial_reconnect_backoff_ms': retryInitialMs, 'grpc.max_reconnect_backoff_ms': retryMaxMs },
  });
  const factory = createClientFactory().use(createProtoVersionClientMiddleware());
  const tryClient = factory.create(instanceManager.TryServiceDefinition, channel);
  const postClient = factory.create(instanceManager.PostServiceDefinition, channel);
  /** Whether TryAddInstance + TryAddService went through since the last failure. */
  let registered = false;
  let timer: NodeJS.Timeout | undefined;
  let stopped = false;
  /** The current outage (failed attempts in a row), undefined while reachable. */
  let outage: { sinceMs: number; failures: number; lastError: string } | undefined;
  const deadlineMs = Math.max(1000, Math.min(5000, intervalMs));
  const deadline = () => ({ signal: AbortSignal.timeout(deadlineMs) });
  /** The health-check stream; undefined once the instance manager said it has none. */
  let keepAlive: KeepAliveStream | undefined = createKeepAliveStream(tryClient);

  const healthCheck = async (): Promise<instanceManager.TryHealthCheckResponse> => {
    if (keepAlive) {
      try {
        return await keepAlive.check(options.agentId, deadlineMs);
      } catch (err) {
        if (!isUnimplemented(err)) throw err;
        keepAlive.close();
        keepAlive = undefined;
        logger.info({ instanceManager: options.address }, 'the instance manager has no TryHealthCheckStream; using unary TryHealthCheck');
      }
    }
    return tryClient.tryHealthCheck({ instanceId: options.agentId }, deadline());
  };

  const register = async (why: string) => {
    const res = await tryClient.tryAddInstance(
      {
        instance: {
          id: options.agentId,
          type: instanceManager.InstanceType.INSTANCE_TYPE_INFERENCE_AGENT,
          hostname: os.hostname(),
          address: options.endpoint,
          metadata: { engine: options.engine, models: options.models.join(',') },
        },
      },
      deadline(),
    );
    if (!res.success) logger.warn({ message: res.message }, 'instance manager refused TryAddInstance');
    const services = [{ type: instanceManager.ServiceType.SERVICE_TYPE_AGENT_GRPC, port: options.port, url: `grpc://${options.endpoint}` }];
    if (options.openaiUrl) services.push({ type: instanceManager.ServiceType.SERVICE_TYPE_VLLM_OPENAI_COMPATIBLE, port: 0, url: options.openaiUrl });
    for (const service of services) {
      const r = await tryClient.tryAddService({ instanceId: options.agentId, service }, deadline());
      if (!r.success) logger.warn({ message: r.message, type: service.type }, 'instance manager refused TryAddService');
    }
    registered = true;
    logger.info({ instanceManager: options.address, why, message: res.message }, 'registered with the instance manager');
  };

  const postMetrics = async () => {
    const m = options.stats();
    const t = options.totals();
    const now = Date.now();
    const mb = 1048576;
    await Promise.allSettled([
      postClient.postSystemMetrics(
        {
          instanceId: options.agentId,
          metrics: { usedMemoryBytes: (m.totalRamMb - m.freeRamMb) * mb, totalMemoryBytes: m.totalRamMb * mb, cpuPercent: m.cpuPercent, timestampMs: now },
        },
        deadline(),
      ),
      postClient.postLlmMetrics(
        { instanceId: options.agentId, metrics: { requestCount: t.requests, tokensReceived: t.promptTokens, tokensSent: t.tokensGenerated, timestampMs: now } },
        deadline(),
      ),
      ...(m.gpus.length > 0
        ? [
            postClient.postGpuMetrics(
              {
                instanceId: options.agentId,
                metrics: {
                  usedMemoryBytes: m.gpus.reduce((s, g) => s + g.memoryUsedMb, 0) * mb,
                  totalMemoryBytes: m.totalVramMb * mb,
                  utilizationPercent: m.gpus.reduce((s, g) => s + (g.utilizationPercent ?? 0), 0) / m.gpus.length,
                  timestampMs: now,
                  devices: m.gpus.map((g) => ({
                    index: g.index,
                    name: g.name,
                    usedMemoryBytes: g.memoryUsedMb * mb,
                    totalMemoryBytes: g.memoryTotalMb * mb,
                    utilizationPercent: g.utilizationPercent ?? 0,
                  })),
                },
              },
              deadline(),
            ),
          ]
        : []),
    ]);
  };

  const tick = async () => {
    let nextMs = intervalMs;
    try {
      // Register only at start (or when the instance manager no longer counts this agent, below).
      // After an outage the health check comes first: a kill issued meanwhile must be obeyed,
      // not undone by registering a new incarnation.
      if (!registered) await register(outage ? 'the instance manager is reachable again' : 'start');
      let res = await healthCheck();
      if (outage) {
        logger.info(
          { instanceManager: options.address, downForMs: Date.now() - outage.sinceMs, failedAttempts: outage.failures, lastError: outage.lastError },
          'instance manager reachable again',
        );
        outage = undefined;
      }
      if (!res.healthy && (res.status === HealthStatus.HEALTH_STATUS_STALE || res.status === HealthStatus.HEALTH_STATUS_UNKNOWN)) {
        // Marked stale (e.g. after an outage) or forgotten: not a stop order. Register again
        // (a new incarnation) and keep serving.
        logger.warn({ message: res.message, status: HealthStatus[res.status] }, 'instance manager no longer counts this agent as alive; registering again');
        registered = false;
        await register(res.status === HealthStatus.HEALTH_STATUS_STALE ? 'marked stale' : 'unknown to the instance manager');
        res = await healthCheck();
      }
      if (!res.healthy) {
        if (res.status === HealthStatus.HEALTH_STATUS_KILLED || res.status === HealthStatus.HEALTH_STATUS_UNSPECIFIED) {
          // Killed (this agent or an ancestor), or a v1 instance manager (no status): a stop order.
          logger.warn({ message: res.message, status: HealthStatus[res.status] }, 'instance manager told this agent to stop');
          stopped = true;
          clearTimeout(timer);
          options.onStopRequested(res.message || 'instance manager health check answered healthy=false');
          return;
        }
        registered = false; // still not alive right after registering: try again next time
      }
      await postMetrics();
    } catch (err) {
      // Not registering again here: once it answers, the health check says whether this agent is
      // still alive (go on), was killed meanwhile (stop) or was forgotten or marked stale (register).
      const error = (err as Error).message;
      if (!outage) {
        outage = { sinceMs: Date.now(), failures: 0, lastError: error };
        logger.warn({ err: error, instanceManager: options.address }, 'instance manager unreachable; still serving, retrying with backoff');
      }
      nextMs = backoffDelay(outage.failures, retryInitialMs, retryMaxMs);
      outage.failures += 1;
      outage.lastError = error;
    }
    if (!stopped) timer = setTimeout(() => void tick(), nextMs);
  };

  return {
    start() {
      if (timer || stopped) return;
      void tick();
    },
    stop() {
      stopped = true;
      clearTimeout(timer);
      keepAlive?.close();
      channel.close();
    },
  };
}

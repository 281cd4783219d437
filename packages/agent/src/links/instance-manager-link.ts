import os from 'node:os';
import { createClientFactory, type Channel } from 'nice-grpc';
import { createProtoVersionClientMiddleware, createTitanChannel, instanceManager, type ClientTlsOptions } from '@titancompute/protocol';
import type { Logger } from '@titancompute/server-kit';
import type { MachineStats } from '../stats/system-stats.js';
import type { JobTotals } from '../service/job-tracker.js';

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
  stats: () => MachineStats;
  totals: () => Readonly<JobTotals>;
  /** The instance manager answered healthy=false: the agent must drain and exit. */
  onStopRequested: (message: string) => void;
  logger: Logger;
}

/** The agent's registration, health checks and metrics at the instance manager. */
export interface InstanceManagerLink {
  start(): void;
  stop(): void;
}

/**
 * Creates an {@link InstanceManagerLink}: TryAddInstance (type INFERENCE_AGENT), TryAddService
 * (AGENT_GRPC, and VLLM_OPENAI_COMPATIBLE for the openai engine), then every interval
 * TryHealthCheck plus Post{Gpu,System,Llm}Metrics. Only an explicit healthy=false stops the
 * agent; an unreachable instance manager is retried and the agent keeps serving.
 */
export function createInstanceManagerLink(options: InstanceManagerLinkOptions): InstanceManagerLink {
  const { logger } = options;
  const channel: Channel = createTitanChannel(options.address, options.tls ? { tls: options.tls } : {});
  const factory = createClientFactory().use(createProtoVersionClientMiddleware());
  const tryClient = factory.create(instanceManager.TryServiceDefinition, channel);
  const postClient = factory.create(instanceManager.PostServiceDefinition, channel);
  const intervalMs = options.intervalMs ?? 5000;
  let added = false;
  let timer: NodeJS.Timeout | undefined;
  let stopped = false;
  let warned = false;
  const deadline = () => ({ signal: AbortSignal.timeout(Math.max(1000, Math.min(5000, intervalMs))) });

  const addSelf = async () => {
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
    added = true;
    logger.info({ instanceManager: options.address }, 'registered with the instance manager');
  };

  const postMetrics = async () => {
    const m = options.stats();
    const t = options.totals();
    const now = Date.now();
    const mb = 1048576;
    await Promise.allSettled([
      postClient.postSystemMetrics(
        { instanceId: options.agentId, metrics: { usedMemoryBytes: (m.totalRamMb - m.freeRamMb) * mb, totalMemoryBytes: m.totalRamMb * mb, cpuPercent: m.cpuPercent, timestampMs: now } },
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
                  devices: m.gpus.map((g) => ({ index: g.index, name: g.name, usedMemoryBytes: g.memoryUsedMb * mb, totalMemoryBytes: g.memoryTotalMb * mb, utilizationPercent: g.utilizationPercent ?? 0 })),
                },
              },
              deadline(),
            ),
          ]
        : []),
    ]);
  };

  const tick = async () => {
    try {
      if (!added) await addSelf();
      const res = await tryClient.tryHealthCheck({ instanceId: options.agentId }, deadline());
      warned = false;
      if (!res.healthy) {
        logger.warn({ message: res.message }, 'instance manager told this agent to stop');
        stopped = true;
        options.onStopRequested(res.message || 'instance manager health check answered healthy=false');
        return;
      }
      await postMetrics();
    } catch (err) {
      if (!warned) logger.warn({ err: (err as Error).message, instanceManager: options.address }, 'instance manager unreachable; still serving, retrying');
      warned = true;
    }
    if (!stopped) timer = setTimeout(() => void tick(), intervalMs);
  };

  return {
    start() {
      if (timer || stopped) return;
      void tick();
    },
    stop() {
      stopped = true;
      clearTimeout(timer);
      channel.close();
    },
  };
}

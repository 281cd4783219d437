import { ServerError, Status, type CallContext } from 'nice-grpc-common';
import type { AgentStatus, CoordinatorServiceImplementation, HealthAck, HealthUpdate } from '@titancompute/protocol';
import type { Logger } from '@titancompute/server-kit';
import { z } from 'zod';
import { AgentsBusyError, InvalidRequestError } from '../errors.js';
import { checkJoinToken } from '../join-token.js';
import type { CoordinatorMetricsSink } from '../metrics.js';
import type { AgentRecord } from '../registry/agent-record.js';
import type { AgentRegistry } from '../registry/agent-registry.js';
import { TOKEN_ALGORITHM, type Keyring } from '../tokens/keyring.js';
import type { InferenceGrant } from './request-router.js';
import type { InferenceInput } from './request-validation.js';

/** Dependencies of {@link createCoordinatorService}. */
export interface CoordinatorServiceOptions {
  registry: AgentRegistry;
  keyring: Keyring;
  metrics: CoordinatorMetricsSink;
  route: (input: InferenceInput) => Promise<InferenceGrant>;
  joinToken: string;
  issuer: string;
  heartbeatIntervalMs: number;
  /** Start time (ms) for uptime. */
  startedAt: number;
  /** Aborted on shutdown: health streams end on it. */
  shutdownSignal: AbortSignal;
  logger: Logger;
}

const registrationSchema = z.object({
  agentId: z.string().trim().min(1, 'is required').max(256, 'must be at most 256 characters'),
  endpoint: z.string().trim().regex(/^[^\s]+:\d{1,5}$/, 'must be host:port'),
  totalVramMb: z.number().int().min(0, 'must not be negative'),
  totalRamMb: z.number().int().min(0, 'must not be negative'),
  maxJobs: z.number().int().min(1, 'must be at least 1').max(100_000, 'must be at most 100000'),
  supportedModels: z.array(z.string().min(1, 'entries must not be empty')).max(1000, 'must list at most 1000 models'),
  maxQueue: z.number().int().min(0, 'must not be negative'),
});

const REGISTRATION_FIELDS: Record<string, string> = {
  agentId: 'agent_id',
  endpoint: 'endpoint',
  totalVramMb: 'total_vram_mb',
  totalRamMb: 'total_ram_mb',
  maxJobs: 'max_jobs',
  supportedModels: 'supported_models',
  maxQueue: 'max_queue',
};

/** Formats a duration like Go: "3s", "2m3s", "1h2m3s". */
export function formatUptime(ms: number): string {
  const total = Math.floor(ms / 1000);
  const h = Math.floor(total / 3600);
  const m = Math.floor((total % 3600) / 60);
  const s = total % 60;
  if (h > 0) return `${h}h${m}m${s}s`;
  if (m > 0) return `${m}m${s}s`;
  return `${s}s`;
}

/** The AgentStatus message of a record. */
export function agentStatusOf(r: AgentRecord): AgentStatus {
  return {
    agentId: r.agentId,
    status: r.state(),
    freeVramMb: r.freeVramMb,
    runningJobs: r.runningJobs,
    lastHeartbeat: r.lastHeartbeatMs,
    endpoint: r.endpoint,
    totalVramMb: r.totalVramMb,
    totalRamMb: r.totalRamMb,
    freeRamMb: r.freeRamMb,
    queuedJobs: r.queuedJobs,
    maxJobs: r.maxJobs,
    rttMs: r.rttMs,
    supportedModels: [...r.supportedModels],
    tokensPerSecond: r.tokensPerSecond ?? 0,
    reservedJobs: r.reservedJobs,
    breakerState: r.breakerState(),
    gpus: r.gpus,
    cpuPercent: r.cpuPercent,
  };
}

/** Ends an async iteration when `signal` aborts. */
async function* untilAborted<T>(source: AsyncIterable<T>, signal: AbortSignal): AsyncGenerator<T> {
  const iterator = source[Symbol.asyncIterator]();
  const aborted = new Promise<'aborted'>((resolve) => {
    if (signal.aborted) resolve('aborted');
    else signal.addEventListener('abort', () => resolve('aborted'), { once: true });
  });
  try {
    for (;;) {
      const next = await Promise.race([iterator.next(), aborted]);
      if (next === 'aborted' || next.done) return;
      yield next.value;
    }
  } finally {
    void iterator.return?.();
  }
}

let nextStreamId = 1;

/**
 * The CoordinatorService handlers (gRPC): inference routing, agent registration with the join
 * token, one long-lived health stream per agent, status and public keys.
 */
export function createCoordinatorService(options: CoordinatorServiceOptions): CoordinatorServiceImplementation {
  const { registry, keyring, metrics, logger } = options;
  const heartbeatIntervalSeconds = Math.max(1, Math.ceil(options.heartbeatIntervalMs / 1000));
  const requireJoinToken = (context: CallContext) => checkJoinToken(context.metadata.get('authorization'), options.joinToken);

  return {
    async requestInference(request, context) {
      metrics.request('grpc');
      try {
        const grant = await options.route({
          clientId: request.clientId,
          model: request.model,
          prompt: request.prompt,
          maxTokens: request.maxTokens,
          temperature: request.temperature,
          temperatureSet: request.temperatureSet,
          parameters: request.parameters,
          excludeAgentIds: request.excludeAgentIds,
        });
        return grant;
      } catch (err) {
        if (err instanceof AgentsBusyError) {
          context.trailer.set('retry-after-ms', String(err.retryAfterMs));
          throw new ServerError(Status.RESOURCE_EXHAUSTED, err.message);
        }
        throw err;
      }
    },

    async registerAgent(request, context) {
      requireJoinToken(context);
      const parsed = registrationSchema.safeParse(request);
      if (!parsed.success) {
        const issue = parsed.error.issues[0];
        const key = String(issue?.path[0] ?? 'registration');
        throw new InvalidRequestError(REGISTRATION_FIELDS[key] ?? key, issue?.message ?? 'is invalid');
      }
      const record = registry.register(request);
      logger.info(
        { agentId: record.agentId, endpoint: record.endpoint, models: request.supportedModels, maxJobs: record.maxJobs, totalVramMb: record.totalVramMb, totalRamMb: record.totalRamMb },
        'agent registered',
      );
      return { status: 'registered', message: `agent ${record.agentId} registered`, heartbeatIntervalSeconds };
    },

    async *reportHealth(requests, context) {
      requireJoinToken(context);
      const streamId = nextStreamId++;
      let agentId: string | undefined;
      const signal = AbortSignal.any([context.signal, options.shutdownSignal]);
      let dropped = false;
      try {
        for await (const update of untilAborted<HealthUpdate>(requests, signal)) {
          if (agentId !== undefined && update.agentId !== agentId) registry.streamClosed(agentId, streamId, false);
          agentId = update.agentId;
          const result = registry.applyHealth(update, streamId);
          const ack: HealthAck = { agentId: update.agentId, status: 'ok', message: '', reregister: false, echoTimestamp: update.timestamp };
          if (!result.known) {
            ack.status = 'unknown';
            ack.message = 'unknown agent: register again';
            ack.reregister = true;
          } else if (result.deregistered) {
            ack.status = 'deregistered';
            ack.message = 'agent deregistered';
          } else if (result.record.draining) {
            ack.status = 'draining';
          }
          yield ack;
        }
        dropped = context.signal.aborted && !options.shutdownSignal.aborted;
      } catch (err) {
        dropped = !options.shutdownSignal.aborted;
        if (!(err instanceof Error && (err.name === 'AbortError' || context.signal.aborted))) throw err;
      } finally {
        if (agentId !== undefined) {
          registry.streamClosed(agentId, streamId, dropped);
          logger.info({ agentId, dropped }, 'health stream closed; agent offline');
        }
      }
    },

    async querySystemStatus(request) {
      const records = registry.list();
      const uptimeMs = Date.now() - options.startedAt;
      return {
        totalAgents: records.length,
        healthyAgents: records.filter((r) => r.state() === 'healthy').length,
        totalJobs: metrics.scheduledTotal(),
        uptime: formatUptime(uptimeMs),
        uptimeSeconds: uptimeMs / 1000,
        agents: request.includeAgents ? records.map(agentStatusOf) : [],
        ...(request.includeMetrics ? { metrics: metrics.snapshot() } : {}),
      };
    },

    async getPublicKey() {
      const keys = keyring.publishedKeys();
      const current = keyring.current();
      return {
        publicKeyPem: current.publicKeyPem,
        algorithm: TOKEN_ALGORITHM,
        issuer: options.issuer,
        keyId: current.kid,
        keys,
      };
    },

    async deregisterAgent(request, context) {
      requireJoinToken(context);
      if (!request.agentId) throw new InvalidRequestError('agent_id', 'is required');
      const known = registry.deregister(request.agentId);
      if (!known) throw new ServerError(Status.NOT_FOUND, `agent ${request.agentId} is not registered`);
      logger.info({ agentId: request.agentId, reason: request.reason }, 'agent deregistered');
      return { status: 'deregistered', message: `agent ${request.agentId} deregistered` };
    },
  };
}


import { createClient, createClientFactory } from 'nice-grpc';
import { HealthDefinition } from 'nice-grpc-server-health';
import { HealthCheckResponse_ServingStatus } from 'nice-grpc-server-health/lib/proto/grpc/health/v1/health.js';
import { AgentServiceDefinition, createProtoVersionClientMiddleware, createTitanChannel, SERVICE_NAMES, type ClientTlsOptions } from '@titancompute/protocol';
import type { Logger } from '@titancompute/server-kit';
import type { AgentRecord, EndpointCheck } from '../registry/agent-record.js';

/** Options of {@link createEndpointVerifier}. */
export interface EndpointVerifierOptions {
  /** TLS of the coordinator's outgoing calls (the same files as its server); plaintext when absent. */
  tls?: ClientTlsOptions | undefined;
  /** Attempts before an endpoint is declared unreachable. Default 5. */
  attempts?: number;
  /** Backoff between attempts: first delay, doubled up to `maxDelayMs`. Defaults 250 ms and 4 s. */
  initialDelayMs?: number;
  maxDelayMs?: number;
  /** Deadline of each attempt (health check + GetStatus). Default 3 s. */
  attemptTimeoutMs?: number;
  /** An unreachable agent is checked again on a health update once this long has passed. Default 30 s. */
  recheckAfterMs?: number;
  /**
   * Attempts (dials) in flight at once; the others wait their turn. A thousand agents registering
   * together would otherwise open a thousand channels at once, and the garbage they leave grows
   * the heap for good. Default {@link DEFAULT_MAX_CONCURRENT_PROBES}.
   */
  maxConcurrentProbes?: number;
  logger: Logger;
}

/** Default {@link EndpointVerifierOptions.maxConcurrentProbes}. */
export const DEFAULT_MAX_CONCURRENT_PROBES = 16;

/**
 * Makes sure an agent's endpoint really is that agent before clients are sent there: the
 * coordinator dials it and needs grpc.health.v1 `Check(titancompute.v1.AgentService)` =
 * SERVING and `AgentService.GetStatus` answering with the same agent_id. Until then the record
 * is `pending` (state `unverified`, never scheduled); after `attempts` failures (backoff) it is
 * `unreachable` and the reason is logged; it is tried again on a later health update after
 * `recheckAfterMs`, or when the agent registers again.
 */
export interface EndpointVerifier {
  /**
   * Marks the record `pending` and checks its current endpoint in the background (a check in
   * flight for the same agent is abandoned). Resolves with the outcome (`pending` when superseded).
   */
  verify(record: AgentRecord): Promise<EndpointCheck>;
  /** Whether an `unreachable` record is due for another check. */
  recheckDue(record: AgentRecord): boolean;
  /** One attempt; rejects with the reason. */
  probe(agentId: string, endpoint: string): Promise<void>;
  /** Abandons every check in flight. */
  stop(): void;
}

/** Creates an {@link EndpointVerifier}. */
export function createEndpointVerifier(options: EndpointVerifierOptions): EndpointVerifier {
  const { logger } = options;
  const attempts = Math.max(1, options.attempts ?? 5);
  const initialDelayMs = options.initialDelayMs ?? 250;
  const maxDelayMs = options.maxDelayMs ?? 4000;
  const attemptTimeoutMs = options.attemptTimeoutMs ?? 3000;
  const recheckAfterMs = options.recheckAfterMs ?? 30_000;
  const inFlight = new Map<string, AbortController>();
  const finishedAt = new Map<string, number>();
  const stopAll = new AbortController();
  const clients = createClientFactory().use(createProtoVersionClientMiddleware());
  const maxProbes = Math.max(1, options.maxConcurrentProbes ?? DEFAULT_MAX_CONCURRENT_PROBES);
  let probing = 0;
  const turns: (() => void)[] = [];
  /** Runs `attempt` once fewer than `maxProbes` are in flight. */
  const inTurn = async <T>(attempt: () => Promise<T>): Promise<T> => {
    if (probing >= maxProbes) await new Promise<void>((resolve) => turns.push(resolve));
    probing += 1;
    try {
      return await attempt();
    } finally {
      probing -= 1;
      turns.shift()?.();
    }
  };

  const probe = (agentId: string, endpoint: string, signal?: AbortSignal): Promise<void> => inTurn(() => dial(agentId, endpoint, signal));
  const dial = async (agentId: string, endpoint: string, signal?: AbortSignal): Promise<void> => {
    // Superseded or stopped while waiting for its turn.
    if (signal?.aborted) throw new Error('endpoint check abandoned');
    const channel = createTitanChannel(endpoint, options.tls ? { tls: options.tls } : {});
    const callSignal = AbortSignal.any([AbortSignal.timeout(attemptTimeoutMs), ...(signal ? [signal] : [])]);
    try {
      const health = await createClient(HealthDefinition, channel).check({ service: SERVICE_NAMES.agent }, { signal: callSignal });
      if (health.status !== HealthCheckResponse_ServingStatus.SERVING) {
        throw new Error(`grpc health of ${SERVICE_NAMES.agent} is ${HealthCheckResponse_ServingStatus[health.status] ?? health.status}, not SERVING`);
      }
      const status = await clients.create(AgentServiceDefinition, channel).getStatus({ agentId, includeJobs: false }, { signal: callSignal });
      if (status.agentId !== agentId) throw new Error(`the server at ${endpoint} is agent "${status.agentId}", not "${agentId}"`);
    } finally {
      channel.close();
    }
  };

  const sleep = (ms: number, signal: AbortSignal) =>
    new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, ms);
      signal.addEventListener(
        'abort',
        () => {
          clearTimeout(timer);
          resolve();
        },
        { once: true },
      );
    });

  return {
    async verify(record) {
      const { agentId, endpoint } = record;
      inFlight.get(agentId)?.abort();
      const controller = new AbortController();
      const signal = AbortSignal.any([controller.signal, stopAll.signal]);
      inFlight.set(agentId, controller);
      record.endpointCheck = 'pending';
      const current = () => !signal.aborted && inFlight.get(agentId) === controller && record.endpoint === endpoint;
      let lastError = '';
      try {
        for (let attempt = 0; attempt < attempts; attempt++) {
          if (attempt > 0) await sleep(Math.min(maxDelayMs, initialDelayMs * 2 ** (attempt - 1)), signal);
          if (!current()) return 'pending';
          try {
            await probe(agentId, endpoint, signal);
            if (!current()) return 'pending';
            record.endpointCheck = 'verified';
            logger.info({ agentId, endpoint, attempts: attempt + 1 }, 'agent endpoint verified; routing to it');
            return 'verified';
          } catch (err) {
            lastError = (err as Error).message;
            logger.debug({ agentId, endpoint, attempt: attempt + 1, err: lastError }, 'agent endpoint check failed');
          }
        }
        if (!current()) return 'pending';
        record.endpointCheck = 'unreachable';
        logger.warn(
          { agentId, endpoint, attempts, err: lastError, recheckAfterMs },
          'agent endpoint unreachable: not routing to it (check its --public-host/--port and TLS; it is tried again later)',
        );
        return 'unreachable';
      } finally {
        if (inFlight.get(agentId) === controller) {
          inFlight.delete(agentId);
          finishedAt.set(agentId, Date.now());
        }
      }
    },
    recheckDue(record) {
      return record.endpointCheck === 'unreachable' && !inFlight.has(record.agentId) && Date.now() - (finishedAt.get(record.agentId) ?? 0) >= recheckAfterMs;
    },
    probe: (agentId, endpoint) => probe(agentId, endpoint),
    stop() {
      stopAll.abort();
    },
  };
}

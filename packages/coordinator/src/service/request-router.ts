import { randomUUID } from 'node:crypto';
import { AgentsBusyError, ClientShareExceededError, CoordinatorError, InvalidRequestError, NoAgentAvailableError } from '../errors.js';
import type { CoordinatorMetricsSink } from '../metrics.js';
import type { AgentRecord } from '../registry/agent-record.js';
import type { AgentRegistry } from '../registry/agent-registry.js';
import type { Scheduler } from '../scheduler/scheduler.js';
import type { Keyring } from '../tokens/keyring.js';
import { signSessionToken } from '../tokens/session-token.js';
import { createRequestValidator, type InferenceInput, type RequestLimits } from './request-validation.js';

/** What RequestInference (and the REST endpoint) returns. */
export interface InferenceGrant {
  agentEndpoint: string;
  sessionToken: string;
  /** Unix seconds. */
  expiresAt: number;
  jobId: string;
  estimatedRttMs: number;
  agentId: string;
  maxTokens: number;
  temperature: number;
}

/** Dependencies of {@link createRequestRouter}. */
export interface RequestRouterOptions {
  registry: AgentRegistry;
  scheduler: Scheduler;
  keyring: Keyring;
  metrics: CoordinatorMetricsSink;
  limits: RequestLimits;
  issuer: string;
  tokenTtlMs: number;
  /**
   * Retry hint (ms) when a running job blocks the request: agents report a job's end the moment
   * it happens, so a slot may free at any time. Default {@link DEFAULT_BUSY_RETRY_HINT_MS}.
   */
  busyRetryHintMs?: number;
  /**
   * Share of the fleet's slots (sum of `max_jobs` of the agents taking work) one `client_id`
   * may hold in reservations plus started jobs; at least 1 slot. Default
   * {@link DEFAULT_MAX_CLIENT_SHARE}.
   */
  maxClientShare?: number;
  /** Clock (ms). Default `Date.now`. */
  now?: () => number;
}

/** Default {@link RequestRouterOptions.busyRetryHintMs}. */
export const DEFAULT_BUSY_RETRY_HINT_MS = 250;
/** Default {@link RequestRouterOptions.maxClientShare}. */
export const DEFAULT_MAX_CLIENT_SHARE = 0.5;

/**
 * When a busy answer says to retry (ms): when one of the blocking agents has jobs running or
 * queued, the short hint (a job may end any moment and the agent reports it at once);
 * otherwise only unclaimed reservations hold the slots, so the earliest end of their claim
 * windows (at least 1 ms).
 */
export function busyRetryAfterMs(
  blocking: Iterable<Pick<AgentRecord, 'runningJobs' | 'queuedJobs' | 'earliestReservationExpiry'>>,
  nowMs: number,
  hintMs: number,
): number {
  let earliest: number | undefined;
  for (const agent of blocking) {
    if (agent.runningJobs + agent.queuedJobs > 0) return hintMs;
    const e = agent.earliestReservationExpiry();
    if (e !== undefined && (earliest === undefined || e < earliest)) earliest = e;
  }
  return earliest === undefined ? hintMs : Math.max(1, Math.ceil(earliest - nowMs));
}

/**
 * Routes one inference request: validate, schedule (hard filters + score over the agents
 * serving the model, counting reservations), check the client's share of the fleet, reserve a
 * slot (through the registry, for the claim window) under a new job id, sign the session
 * token. Throws {@link InvalidRequestError}, {@link NoAgentAvailableError},
 * {@link AgentsBusyError} (with a retry hint, see {@link busyRetryAfterMs}),
 * {@link ClientShareExceededError} or a token signing error.
 */
export function createRequestRouter(options: RequestRouterOptions): (input: InferenceInput) => Promise<InferenceGrant> {
  const validate = createRequestValidator(options.limits);
  const { registry, scheduler, metrics } = options;
  const now = options.now ?? Date.now;
  const hintMs = options.busyRetryHintMs ?? DEFAULT_BUSY_RETRY_HINT_MS;
  const share = options.maxClientShare ?? DEFAULT_MAX_CLIENT_SHARE;
  return async (input) => {
    const started = performance.now();
    let request: ReturnType<typeof validate>;
    try {
      request = validate(input);
    } catch (err) {
      metrics.decision(err instanceof InvalidRequestError ? 'invalid' : 'error');
      throw err;
    }
    registry.expireReservations();
    const decision = scheduler.select(registry.candidates(request.model), {
      model: request.model,
      requiredMemoryMb: request.requiredMemoryMb,
      excludeAgentIds: request.excludeAgentIds,
    });
    if (decision.outcome === 'no_agent') {
      metrics.decision('no_agent');
      throw new NoAgentAvailableError(request.model);
    }
    if (decision.outcome === 'busy') {
      metrics.decision('busy');
      throw new AgentsBusyError(request.model, busyRetryAfterMs(decision.blocking, now(), hintMs));
    }
    const agent = decision.agent;
    const fleetSlots = registry.fleetSlots();
    const limit = Math.max(1, Math.floor(share * fleetSlots));
    const held = registry.clientHeld(request.clientId);
    if (held >= limit) {
      metrics.decision('client_limit');
      const earliest = registry.clientEarliestExpiry(request.clientId);
      const startedHeld = held - countReservations(registry, request.clientId);
      const retryAfterMs = startedHeld > 0 || earliest === undefined ? hintMs : Math.max(1, Math.ceil(earliest - now()));
      throw new ClientShareExceededError(request.clientId, request.model, { held, limit, share, fleetSlots }, retryAfterMs);
    }
    const jobId = randomUUID();
    // Reserve before the first await so concurrent requests see the slot taken.
    registry.reserve(agent, jobId, request.clientId);
    try {
      const signed = await signSessionToken(
        options.keyring,
        {
          agentId: agent.agentId,
          clientId: request.clientId,
          jobId,
          model: request.model,
          maxTokens: request.maxTokens,
          temperature: request.temperature,
          parameters: request.parameters,
          prompt: request.prompt,
          messages: request.messages,
        },
        { issuer: options.issuer, ttlMs: options.tokenTtlMs },
      );
      metrics.decision('scheduled', performance.now() - started);
      return {
        agentEndpoint: agent.endpoint,
        sessionToken: signed.token,
        expiresAt: signed.expiresAt,
        jobId,
        estimatedRttMs: agent.rttMs,
        agentId: agent.agentId,
        maxTokens: request.maxTokens,
        temperature: request.temperature,
      };
    } catch (err) {
      registry.release(agent, jobId, 'failed');
      metrics.decision('error');
      throw err instanceof CoordinatorError ? err : new CoordinatorError('scheduling failed', {}, { cause: err });
    }
  };
}

function countReservations(registry: AgentRegistry, clientId: string): number {
  let n = 0;
  for (const record of registry.list()) for (const r of record.reservations.values()) if (r.clientId === clientId) n += 1;
  return n;
}

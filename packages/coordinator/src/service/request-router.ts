import { randomUUID } from 'node:crypto';
import { AgentsBusyError, CoordinatorError, InvalidRequestError, NoAgentAvailableError } from '../errors.js';
import type { CoordinatorMetricsSink } from '../metrics.js';
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
  /** Retry hint given when every agent is busy. */
  retryAfterMs: number;
}

/**
 * Routes one inference request: validate, schedule (hard filters + score over the agents
 * serving the model, counting reservations), reserve a slot under a new job id, sign the
 * session token. Throws {@link InvalidRequestError}, {@link NoAgentAvailableError},
 * {@link AgentsBusyError} or a token signing error.
 */
export function createRequestRouter(options: RequestRouterOptions): (input: InferenceInput) => Promise<InferenceGrant> {
  const validate = createRequestValidator(options.limits);
  const { registry, scheduler, metrics } = options;
  return async (input) => {
    const started = performance.now();
    let request;
    try {
      request = validate(input);
    } catch (err) {
      metrics.decision(err instanceof InvalidRequestError ? 'invalid' : 'error');
      throw err;
    }
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
      throw new AgentsBusyError(request.model, options.retryAfterMs);
    }
    const agent = decision.agent;
    const jobId = randomUUID();
    // Reserve before the first await so concurrent requests see the slot taken.
    registry.reserve(agent, jobId, Date.now() + options.tokenTtlMs);
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
        },
        { issuer: options.issuer, ttlMs: options.tokenTtlMs },
      );
      agent.reservations.set(jobId, signed.expiresAt * 1000);
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
      agent.reservations.delete(jobId);
      metrics.decision('error');
      throw err instanceof CoordinatorError ? err : new CoordinatorError('scheduling failed', {}, { cause: err });
    }
  };
}

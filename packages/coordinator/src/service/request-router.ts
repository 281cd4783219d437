import { randomUUID } from 'node:crypto';
import type { Context, Span } from '@opentelemetry/api';
import { prefixBlockHashes, prefixText, TRACE_ATTRIBUTES } from '@titancompute/protocol';
import { failSpan, startChildSpan, type Logger } from '@titancompute/server-kit';
import {
  AgentsBusyError,
  ApiKeyAuthError,
  ClientShareExceededError,
  CoordinatorError,
  InvalidRequestError,
  ModelNotAllowedError,
  NoAgentAvailableError,
  QuotaExceededError,
} from '../errors.js';
import type { ApiKeyRecord } from '../keys/api-key.js';
import type { ApiKeys, KeyAdmission } from '../keys/api-keys.js';
import type { CoordinatorMetricsSink } from '../metrics.js';
import type { AgentRecord } from '../registry/agent-record.js';
import type { AgentRegistry } from '../registry/agent-registry.js';
import type { FleetStore } from '../registry/fleet-store.js';
import { createCandidateIndex } from '../scheduler/candidate-index.js';
import type { PrefixAffinity } from '../scheduler/prefix-affinity.js';
import type { SchedulableAgent, ScheduleDecision, Scheduler } from '../scheduler/scheduler.js';
import type { Keyring } from '../tokens/keyring.js';
import { signSessionTokenSync } from '../tokens/session-token.js';
import { createRequestValidator, type InferenceInput, type RequestLimits, type ValidatedInference } from './request-validation.js';

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
  /**
   * OpenAI-style `x-ratelimit-{limit,remaining,reset}-{requests,tokens}` of the request's API
   * key, for the limits it has (requests and/or tokens per minute); absent without a key or limits.
   * The REST routes send them as headers.
   */
  rateLimitHeaders?: Record<string, string>;
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
  /**
   * Prefix-aware routing: where each prompt prefix is likely warm in an engine's KV cache. A
   * request whose prompt (or chat) has whole prefix blocks is scored with its affinity (see the
   * scheduler's `prefix` weight and load cap), and its blocks are recorded for the chosen agent.
   * Absent or mode `off`: load-only routing.
   */
  prefixAffinity?: PrefixAffinity | undefined;
  /**
   * API keys: authentication (`InferenceInput.authorization`), the key's model allow-list and
   * quotas, checked before anything is reserved or signed. Absent: no authentication (client_id as given).
   */
  keys?: ApiKeys | undefined;
  /**
   * The fleet shared by coordinator replicas (`--store postgres`): each decision then awaits its
   * reservation, taken atomically in the database on the best of up to
   * {@link SHARED_RESERVE_CANDIDATES} candidates, and the client share and a key's max-concurrent
   * count over the cluster. Absent (single node, SQLite): reserved in memory, nothing awaited.
   */
  fleet?: FleetStore | undefined;
  /** Where a reservation that could not be given back is logged (shared fleet). */
  logger?: Logger | undefined;
}

/** How many candidates, best first, one shared reservation tries before answering busy. */
export const SHARED_RESERVE_CANDIDATES = 4;

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
 * Routes one inference request: authenticate its API key when keys are in force (the key's
 * name becomes the client id), validate, check the key (model allow-list, budget, requests and
 * tokens per minute, concurrent jobs), schedule (hard filters + score over the agents serving
 * the model, counting reservations), check the client's share of the fleet, reserve a slot
 * (through the registry, for the claim window) under a new job id, count the grant against the
 * key, sign the session token. Every entry point (gRPC, REST, OpenAI routes) goes through here.
 * Throws `ApiKeyAuthError`, {@link InvalidRequestError}, `ModelNotAllowedError`,
 * `QuotaExceededError`, {@link NoAgentAvailableError}, {@link AgentsBusyError} (with a retry
 * hint, see {@link busyRetryAfterMs}), {@link ClientShareExceededError} or a token signing error.
 *
 * On a single node (SQLite) nothing is awaited from the key check to the signed token. With a
 * shared fleet (`fleet`, PostgreSQL) the reservation is the one awaited step: taken atomically in
 * the database on the best of a few candidates, with the client share and the key's max-concurrent
 * counted over the cluster; the key's grant is committed with that job or reverted.
 *
 * Traced under `traceContext` (the span of the gRPC call or HTTP request, when it records): a
 * `titan.schedule` span (schedule, client share, reservation; `titan.schedule.outcome`, the
 * chosen agent and job id) and a `titan.sign_token` span.
 */
export function createRequestRouter(options: RequestRouterOptions): (input: InferenceInput, traceContext?: Context) => Promise<InferenceGrant> {
  const validate = createRequestValidator(options.limits);
  const { registry, scheduler, metrics } = options;
  const now = options.now ?? Date.now;
  const hintMs = options.busyRetryHintMs ?? DEFAULT_BUSY_RETRY_HINT_MS;
  const share = options.maxClientShare ?? DEFAULT_MAX_CLIENT_SHARE;
  // Eligible agents per model, ordered by score and kept up to date by the registry: a plain
  // request takes the best in O(1) instead of scoring every agent that serves its model.
  const candidates = createCandidateIndex({ score: (agent) => scheduler.score(agent) });
  registry.watch((record, removed) => (removed ? candidates.remove(record) : candidates.update(record)));
  for (const record of registry.list()) candidates.update(record);
  /** When a slot held by `clientId` may free: soon when one of its jobs runs, else at its earliest claim-window end. */
  const clientRetryAfterMs = (clientId: string, held: number) => {
    const earliest = registry.clientEarliestExpiry(clientId);
    const startedHeld = held - registry.clientReserved(clientId);
    return startedHeld > 0 || earliest === undefined ? hintMs : Math.max(1, Math.ceil(earliest - now()));
  };
  /**
   * Ends the schedule span of a request refused with `err`: `outcome` as counted in the metrics
   * and `error.type` (a refusal, not a failure of the span: no error status).
   */
  const refuse = <E>(span: Span | undefined, outcome: string, err: E): E => {
    if (span) {
      span.setAttributes({ [TRACE_ATTRIBUTES.scheduleOutcome]: outcome, [TRACE_ATTRIBUTES.errorType]: err instanceof Error ? err.name : 'Error' });
      span.end();
    }
    return err;
  };
  /** The request's prefix blocks and, when some agent holds some of them, its affinity function. */
  const affinityFor = (request: ValidatedInference) => {
    const affinity = options.prefixAffinity;
    const blocks = affinity && affinity.mode !== 'off' ? prefixBlockHashes(prefixText(request.prompt, request.messages)) : [];
    const affinityOf =
      blocks.length > 0 && affinity!.anyHolds(blocks) ? (a: SchedulableAgent) => affinity!.matchedBlocks(a.agentId, blocks) / blocks.length : undefined;
    return { blocks, affinityOf };
  };
  /** Whether the candidate index answers this request (no exclusions, memory requirement or affinity). */
  const plain = (request: ValidatedInference, affinityOf: unknown) =>
    request.excludeAgentIds.size === 0 && request.requiredMemoryMb === undefined && affinityOf === undefined;
  /** Ends a schedule span that reserved `jobId` on `agent`. */
  const scheduled = (span: Span | undefined, agent: AgentRecord, jobId: string) => {
    if (!span) return;
    span.setAttributes({ [TRACE_ATTRIBUTES.scheduleOutcome]: 'scheduled', [TRACE_ATTRIBUTES.agentId]: agent.agentId, [TRACE_ATTRIBUTES.jobId]: jobId });
    span.end();
  };
  /**
   * Signs the token of a reserved job, in the turn it is called (crypto.sign on a cached
   * KeyObject: no await), and builds the grant. On failure `undo` gives the reservation back.
   */
  const sign = (
    agent: AgentRecord,
    jobId: string,
    request: ValidatedInference,
    admission: KeyAdmission | undefined,
    traceContext: Context | undefined,
    started: number,
    undo: () => void,
  ): InferenceGrant => {
    const signSpan = startChildSpan('titan.sign_token', traceContext, { [TRACE_ATTRIBUTES.jobId]: jobId, [TRACE_ATTRIBUTES.agentId]: agent.agentId });
    try {
      const signed = signSessionTokenSync(
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
      signSpan?.end();
      metrics.decision('scheduled', performance.now() - started);
      const rateLimitHeaders = admission?.rateLimitHeaders();
      return {
        agentEndpoint: agent.endpoint,
        sessionToken: signed.token,
        expiresAt: signed.expiresAt,
        jobId,
        estimatedRttMs: agent.rttMs,
        agentId: agent.agentId,
        maxTokens: request.maxTokens,
        temperature: request.temperature,
        ...(rateLimitHeaders && Object.keys(rateLimitHeaders).length > 0 ? { rateLimitHeaders } : {}),
      };
    } catch (err) {
      failSpan(signSpan, err);
      undo();
      admission?.revert();
      metrics.decision('error');
      throw err instanceof CoordinatorError ? err : new CoordinatorError('scheduling failed', {}, { cause: err });
    }
  };
  /** The busy answer for `blocking` agents (a key's x-ratelimit-* go with the 429 too: nothing was counted against it). */
  const busy = (span: Span | undefined, model: string, blocking: Iterable<AgentRecord>, admission: KeyAdmission | undefined) => {
    metrics.decision('busy');
    const trailers = admission?.rateLimitHeaders();
    return refuse(span, 'busy', new AgentsBusyError(model, busyRetryAfterMs(blocking, now(), hintMs), trailers ? { trailers } : undefined));
  };

  /**
   * The shared fleet's path (`--store postgres`): the same checks, then one awaited statement
   * reserves atomically in the database on the first of the best candidates with a free slot, under
   * the client's cluster-wide limit (share, key max-concurrent); the key's grant is committed with
   * that job, or given back when nothing was reserved.
   */
  const routeShared = async (
    fleet: FleetStore,
    request: ValidatedInference,
    key: ApiKeyRecord | undefined,
    scheduleSpan: Span | undefined,
    started: number,
    traceContext: Context | undefined,
  ): Promise<InferenceGrant> => {
    let admission: KeyAdmission | undefined;
    if (key && options.keys) {
      try {
        // Concurrent jobs are counted by the database, over the cluster, with the reservation.
        admission = options.keys.admit(key, { model: request.model, held: 0, concurrencyRetryAfterMs: () => hintMs });
      } catch (err) {
        const outcome = err instanceof ModelNotAllowedError ? 'forbidden' : 'quota';
        metrics.decision(outcome);
        throw refuse(scheduleSpan, outcome, err);
      }
    }
    const { blocks, affinityOf } = affinityFor(request);
    let candidatesOf: readonly AgentRecord[];
    if (plain(request, affinityOf)) {
      candidatesOf = candidates.top(request.model, SHARED_RESERVE_CANDIDATES).map((c) => c.agent);
    } else {
      const ranked = scheduler.rank(
        registry.candidates(request.model),
        { model: request.model, requiredMemoryMb: request.requiredMemoryMb, excludeAgentIds: request.excludeAgentIds, affinity: affinityOf },
        SHARED_RESERVE_CANDIDATES,
      );
      if (ranked.outcome === 'busy') {
        admission?.revert();
        throw busy(scheduleSpan, request.model, ranked.blocking, admission);
      }
      candidatesOf = ranked.outcome === 'scheduled' ? ranked.agents : [];
    }
    if (candidatesOf.length === 0) {
      // Nothing eligible in this replica's view: the full scan says whether busy or none.
      const decision = scheduler.select(registry.candidates(request.model), { model: request.model });
      admission?.revert();
      if (decision.outcome === 'busy') throw busy(scheduleSpan, request.model, decision.blocking, admission);
      metrics.decision('no_agent');
      throw refuse(scheduleSpan, 'no_agent', new NoAgentAvailableError(request.model));
    }
    const fleetSlots = registry.fleetSlots();
    const shareLimit = Math.max(1, Math.floor(share * fleetSlots));
    const keyLimit = key && key.maxConcurrent > 0 ? key.maxConcurrent : Number.POSITIVE_INFINITY;
    // A share of 1 without a key limit bounds nothing the agents' slots do not: no per-client lock then.
    const clientLimit = share >= 1 && keyLimit === Number.POSITIVE_INFINITY ? 0 : Math.min(shareLimit, keyLimit);
    const jobId = randomUUID();
    const tokenExpiresAtMs = now() + options.tokenTtlMs;
    let reserved: Awaited<ReturnType<FleetStore['reserve']>>;
    // Counted as reserved while in flight: requests arriving meanwhile pick other agents.
    const first = candidatesOf[0]!;
    registry.adjustPending(first, 1);
    try {
      reserved = await fleet.reserve({
        candidates: candidatesOf,
        jobId,
        clientId: request.clientId,
        keyId: key?.id,
        clientLimit,
        tokenExpiresAtMs,
      });
    } catch (err) {
      admission?.revert();
      metrics.decision('error');
      failSpan(scheduleSpan, err);
      throw err;
    } finally {
      registry.adjustPending(first, -1);
    }
    if (reserved.outcome === 'busy') {
      admission?.revert();
      throw busy(scheduleSpan, request.model, candidatesOf, admission);
    }
    if (reserved.outcome === 'client_limit') {
      admission?.revert();
      const held = reserved.held;
      if (key && held >= keyLimit) {
        metrics.decision('quota');
        throw refuse(
          scheduleSpan,
          'quota',
          new QuotaExceededError(key.name, 'concurrency', { limit: key.maxConcurrent, used: held }, hintMs, admission?.rateLimitHeaders()),
        );
      }
      metrics.decision('client_limit');
      throw refuse(
        scheduleSpan,
        'client_limit',
        new ClientShareExceededError(request.clientId, request.model, { held, limit: shareLimit, share, fleetSlots }, hintMs),
      );
    }
    const agent = reserved.agent;
    // This replica's own bookkeeping (claim window, per-client, metrics); the database holds the slot.
    registry.reserve(agent, jobId, request.clientId);
    admission?.commit(jobId, tokenExpiresAtMs);
    if (blocks.length > 0) options.prefixAffinity!.recordGrant(agent.agentId, blocks);
    scheduled(scheduleSpan, agent, jobId);
    return sign(agent, jobId, request, admission, traceContext, started, () => {
      registry.release(agent, jobId, 'failed');
      fleet.release(jobId).catch((err: unknown) => options.logger?.error({ err, jobId }, 'could not give a shared reservation back'));
    });
  };

  return async (input, traceContext) => {
    const started = performance.now();
    let request: ValidatedInference;
    let key: ApiKeyRecord | undefined;
    try {
      // Without keys in force nothing is awaited (authenticate would answer undefined).
      key = options.keys?.mode() === 'keys' ? await options.keys.authenticate(input.authorization) : undefined;
      request = validate(key ? { ...input, clientId: key.name } : input);
    } catch (err) {
      metrics.decision(err instanceof InvalidRequestError ? 'invalid' : err instanceof ApiKeyAuthError ? 'unauthenticated' : 'error');
      throw err;
    }
    const scheduleSpan = startChildSpan('titan.schedule', traceContext, { [TRACE_ATTRIBUTES.genAiRequestModel]: request.model });
    registry.expireReservations();
    if (options.fleet) return routeShared(options.fleet, request, key, scheduleSpan, started, traceContext);
    // From here to the reservation nothing awaits: a key's checks and its grant are not interleaved with other requests.
    let admission: KeyAdmission | undefined;
    if (key && options.keys) {
      const clientId = request.clientId;
      const held = registry.clientHeld(clientId);
      try {
        admission = options.keys.admit(key, { model: request.model, held, concurrencyRetryAfterMs: () => clientRetryAfterMs(clientId, held) });
      } catch (err) {
        const outcome = err instanceof ModelNotAllowedError ? 'forbidden' : 'quota';
        metrics.decision(outcome);
        throw refuse(scheduleSpan, outcome, err);
      }
    }
    // A prompt with whole prefix blocks, and an agent that holds some of them: score with affinity.
    const { blocks, affinityOf } = affinityFor(request);
    // The index answers what the full scan would for a request without exclusions, memory
    // requirement or prefix affinity; the scan serves the rest, and says which agents block when none is eligible.
    const indexed = plain(request, affinityOf) ? candidates.best(request.model) : undefined;
    const decision: ScheduleDecision<AgentRecord> = indexed
      ? { outcome: 'scheduled', agent: indexed.agent, score: indexed.score }
      : scheduler.select(registry.candidates(request.model), {
          model: request.model,
          requiredMemoryMb: request.requiredMemoryMb,
          excludeAgentIds: request.excludeAgentIds,
          affinity: affinityOf,
        });
    if (decision.outcome === 'no_agent') {
      metrics.decision('no_agent');
      throw refuse(scheduleSpan, 'no_agent', new NoAgentAvailableError(request.model));
    }
    if (decision.outcome === 'busy') throw busy(scheduleSpan, request.model, decision.blocking, admission);
    const agent = decision.agent;
    const fleetSlots = registry.fleetSlots();
    const limit = Math.max(1, Math.floor(share * fleetSlots));
    const held = registry.clientHeld(request.clientId);
    if (held >= limit) {
      metrics.decision('client_limit');
      throw refuse(
        scheduleSpan,
        'client_limit',
        new ClientShareExceededError(request.clientId, request.model, { held, limit, share, fleetSlots }, clientRetryAfterMs(request.clientId, held)),
      );
    }
    const jobId = randomUUID();
    // Reserve before the first await so concurrent requests see the slot taken.
    registry.reserve(agent, jobId, request.clientId);
    admission?.commit(jobId, now() + options.tokenTtlMs);
    if (blocks.length > 0) options.prefixAffinity!.recordGrant(agent.agentId, blocks);
    scheduled(scheduleSpan, agent, jobId);
    return sign(agent, jobId, request, admission, traceContext, started, () => registry.release(agent, jobId, 'failed'));
  };
}

import { Metadata } from 'nice-grpc-common';
import {
  injectTraceContext,
  type AgentServiceClient,
  type CoordinatorServiceClient,
  type InferenceResponse,
  type StreamResponse,
} from '@titancompute/protocol';
import {
  AuthError,
  CapacityError,
  ConnectionError,
  NoAgentsError,
  QuotaExceededError,
  StreamInterruptedError,
  TitanAbortError,
  type TitanError,
  UnavailableError,
  toTitanError,
} from '../errors.js';
import { recordCoordinatorFailover, recordGenerationError, recordGenerationStats, startGenerationSpan } from '../tracing.js';
import type { CoordinatorRotation } from '../transport/coordinator-rotation.js';
import { createCallDeadline } from '../transport/deadline.js';
import { callUnary } from '../transport/unary-call.js';
import type { FinishReason, GenerationChunk, GenerationStats } from '../types.js';
import type { ValidatedRequest } from './validate-request.js';

/** What a generation needs from its client. */
export interface GenerationDeps {
  /** The coordinators to ask (one or several replicas), and which one answered last. */
  coordinators: CoordinatorRotation;
  clientId: string;
  /** The client of the coordinator at `address`. */
  coordinator(address: string): CoordinatorServiceClient;
  agent(endpoint: string): AgentServiceClient;
  requestTimeoutMs: number;
  streamTimeoutMs: number;
  /** Busy answers retried per generation (before the first token only). Default {@link DEFAULT_BUSY_RETRIES}. */
  busyRetries?: number;
  /** Most total wait between busy retries, ms. Default {@link DEFAULT_BUSY_RETRY_MAX_WAIT_MS}. */
  busyRetryMaxWaitMs?: number;
  /** API key sent to the coordinator as `authorization: Bearer …` on RequestInference (never to agents). */
  apiKey?: string | undefined;
}

/** Default {@link GenerationDeps.busyRetries}. */
export const DEFAULT_BUSY_RETRIES = 5;
/** Default {@link GenerationDeps.busyRetryMaxWaitMs}. */
export const DEFAULT_BUSY_RETRY_MAX_WAIT_MS = 10_000;
/** Wait before retrying a busy answer that carried no `retry-after-ms`. */
const DEFAULT_BUSY_WAIT_MS = 250;

/** Sleeps `ms`; rejects with {@link TitanAbortError} when `signal` fires first. */
function sleep(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve, reject) => {
    const aborted = () => new TitanAbortError('the request was aborted while waiting to retry a busy answer', { cause: signal?.reason });
    if (signal?.aborted) return reject(aborted());
    const onAbort = () => {
      clearTimeout(timer);
      reject(aborted());
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/** Failures before the first token that another agent may not have: try the next one. */
function isFailoverable(error: TitanError): boolean {
  return error instanceof ConnectionError || error instanceof AuthError || error instanceof CapacityError || error instanceof UnavailableError;
}

function toFinishReason(value: string | undefined): FinishReason {
  return value === 'length' || value === 'cancelled' ? value : 'stop';
}

function numberOr(value: string | undefined, fallback: number): number {
  const n = Number(value);
  return value !== undefined && Number.isFinite(n) ? n : fallback;
}

function finalStats(message: StreamResponse, grant: InferenceResponse, extra: { tokensSeen: number; clientTtftMs: number; attempts: number }): GenerationStats {
  const s = message.stats;
  const md = message.metadata;
  return {
    tokens: s?.tokensGenerated ?? numberOr(md.tokens_generated, extra.tokensSeen),
    timeToFirstTokenMs: s?.timeToFirstTokenMs ?? numberOr(md.time_to_first_token_ms, 0),
    // Microseconds are all a clock on the client can tell; more digits are float noise in --json.
    clientTimeToFirstTokenMs: Math.round(extra.clientTtftMs * 1000) / 1000,
    tokensPerSecond: s?.tokensPerSecond ?? numberOr(md.tokens_per_second, 0),
    agentId: s?.agentId || md.agent_id || grant.agentId,
    jobId: s?.jobId || md.job_id || grant.jobId,
    finishReason: toFinishReason(s?.finishReason || md.finish_reason),
    promptTokens: s?.promptTokens ?? 0,
    attempts: extra.attempts,
    maxTokens: grant.maxTokens,
    temperature: grant.temperature,
  };
}

/**
 * The zero-proxy flow with failover: ask the coordinator for an agent and a session token,
 * stream straight from that agent, and — only while no token has been delivered — retry on
 * another agent (excluded by id) when the agent is unreachable, refuses the token or is
 * unavailable. A busy answer (RESOURCE_EXHAUSTED from the coordinator, or from the agent before
 * the first token) is retried after its `retry-after-ms` hint, up to `busyRetries` times and
 * `busyRetryMaxWaitMs` of waiting (abortable; not counted as a failover attempt). After the
 * first token a break is a {@link StreamInterruptedError}: the text is never restarted, so the
 * caller never sees it twice.
 *
 * Traced as one span (`titan.generate` or `titan.chat`, see `tracing.ts`) whose context rides as
 * `traceparent` on RequestInference and StreamInference: the coordinator's and the agent's spans
 * join its trace. Without a registered OpenTelemetry provider the span is the API's no-op.
 */
export async function* runGeneration(
  deps: GenerationDeps,
  request: ValidatedRequest,
  onStats?: (stats: GenerationStats) => void,
): AsyncGenerator<GenerationChunk, void, undefined> {
  const excluded: string[] = [];
  let lastAgentError: TitanError | undefined;
  const startedAt = performance.now();
  const maxBusyRetries = deps.busyRetries ?? DEFAULT_BUSY_RETRIES;
  const maxBusyWaitMs = deps.busyRetryMaxWaitMs ?? DEFAULT_BUSY_RETRY_MAX_WAIT_MS;
  let busyRetries = 0;
  let busyWaitedMs = 0;
  /** Waits out a busy answer when the budget allows; false when it is spent (or the key's token budget is: it never refills). */
  const retryBusy = async (error: CapacityError): Promise<boolean> => {
    if (error instanceof QuotaExceededError && error.quota === 'budget') return false;
    if (busyRetries >= maxBusyRetries) return false;
    const wait = Math.max(1, Math.ceil(error.retryAfterMs ?? DEFAULT_BUSY_WAIT_MS));
    if (busyWaitedMs + wait > maxBusyWaitMs) return false;
    busyRetries++;
    busyWaitedMs += wait;
    await sleep(wait, request.signal);
    return true;
  };
  /** The last busy answer, plus what the retries did (its message already says busy: not said again). */
  const stillBusy = (error: CapacityError): CapacityError =>
    busyRetries === 0
      ? error
      : sameCapacityError(error, `${error.message} (retried ${busyRetries} time${busyRetries === 1 ? '' : 's'} over ${busyWaitedMs} ms)`, {
          cause: error,
          context: { ...error.context, busyRetries, busyWaitedMs },
        });
  const traced = startGenerationSpan(request.messages.length > 0, request.model, request.maxTokens, deps.clientId);
  // `traceparent` (when a provider and propagator are registered) on both calls; no metadata otherwise.
  const coordinatorMetadata = injectTraceContext(traced.context, deps.apiKey ? Metadata({ authorization: `Bearer ${deps.apiKey}` }) : undefined);
  const agentMetadata = injectTraceContext(traced.context);

  try {
    for (let attempt = 1; attempt <= request.maxAttempts; attempt++) {
      // 1. Pick an agent.
      let grant: InferenceResponse;
      try {
        // The coordinators in turn (replicas), from the one that answered last: nothing was
        // streamed yet, so an unreachable or unavailable one is simply skipped.
        grant = await deps.coordinators.call(
          (address) =>
            callUnary(
              {
                target: 'coordinator',
                address,
                timeoutMs: deps.requestTimeoutMs,
                signal: request.signal,
                model: request.model,
                extra: { attempt, excludedAgentIds: [...excluded] },
              },
              (options) =>
                deps.coordinator(address).requestInference(
                  {
                    clientId: deps.clientId,
                    model: request.model,
                    prompt: request.prompt,
                    messages: request.messages,
                    maxTokens: request.maxTokens,
                    temperature: request.temperature,
                    temperatureSet: request.temperatureSet,
                    parameters: request.parameters,
                    excludeAgentIds: excluded,
                  },
                  coordinatorMetadata ? { ...options, metadata: coordinatorMetadata } : options,
                ),
            ),
          (failure, next) => recordCoordinatorFailover(traced.span, failure.address, next, failure.error),
        );
      } catch (error) {
        const mapped = error as TitanError; // callUnary throws TitanErrors only
        if (mapped instanceof CapacityError && (await retryBusy(mapped))) {
          attempt--; // a busy answer is waited out, not failed over
          continue;
        }
        if (lastAgentError && (mapped instanceof NoAgentsError || mapped instanceof CapacityError)) {
          const message = `${mapped.message} (after ${attempt - 1} failed attempt(s); last agent error: ${lastAgentError.message})`;
          const options = { cause: mapped, context: { ...mapped.context, lastAgentError } };
          throw mapped instanceof NoAgentsError ? new NoAgentsError(message, request.model, options) : sameCapacityError(mapped, message, options);
        }
        throw mapped instanceof CapacityError ? stillBusy(mapped) : mapped;
      }

      // 2. Stream straight from it.
      const deadline = createCallDeadline(deps.streamTimeoutMs, request.signal);
      let delivered = 0;
      let nextIndex = 0;
      let clientTtftMs = 0;
      let header: Metadata | undefined;
      let trailer: Metadata | undefined;
      const agentContext = { attempt, agentId: grant.agentId, jobId: grant.jobId, endpoint: grant.agentEndpoint };
      try {
        const stream = deps.agent(grant.agentEndpoint).streamInference(
          {
            sessionToken: grant.sessionToken,
            model: request.model,
            prompt: request.prompt,
            messages: request.messages,
            maxTokens: grant.maxTokens || request.maxTokens,
            temperature: grant.maxTokens ? grant.temperature : request.temperature,
            stream: true,
            options: request.parameters,
          },
          { signal: deadline.signal, metadata: agentMetadata, onHeader: (h) => (header = h), onTrailer: (t) => (trailer = t) },
        );
        for await (const message of stream) {
          if (message.done) {
            const stats = finalStats(message, grant, { tokensSeen: nextIndex, clientTtftMs, attempts: attempt });
            if (stats.finishReason === 'cancelled' && !request.signal?.aborted) {
              // The agent cut the job (shutdown, deadline) although this client did not cancel.
              throw new UnavailableError(`agent ${grant.agentId} cancelled the generation (e.g. shutting down)`, {
                context: { ...agentContext, stats },
              });
            }
            recordGenerationStats(traced.span, stats);
            onStats?.(stats);
            yield { done: true, text: '', index: Math.max(stats.tokens, nextIndex), createdAt: message.createdAt || Date.now(), stats };
            return;
          }
          const text = message.content || message.token;
          if (text === '') continue;
          if (delivered === 0) clientTtftMs = performance.now() - startedAt;
          const index = message.tokenIndex > 0 || delivered === 0 ? message.tokenIndex : nextIndex;
          delivered++;
          // A message may carry several tokens (token_count, sent by agents that batch when the
          // client lags); agents that predate the field send one token per message.
          nextIndex = Math.max(nextIndex + 1, index + Math.max(1, message.tokenCount));
          yield { done: false, text, index, createdAt: message.createdAt || Date.now() };
        }
        throw new UnavailableError(`agent ${grant.agentId} (${grant.agentEndpoint}) ended the stream before it was done`, {
          context: agentContext,
        });
      } catch (error) {
        const mapped = toTitanError(error, {
          target: 'agent',
          address: grant.agentEndpoint,
          userSignal: request.signal,
          timeoutSignal: deadline.timeoutSignal,
          timeoutMs: deadline.timeoutMs,
          header,
          trailer,
          model: request.model,
          extra: { ...agentContext, tokensReceived: nextIndex },
        });
        if (mapped instanceof TitanAbortError && request.signal?.aborted) throw mapped;
        if (delivered > 0) {
          throw new StreamInterruptedError(
            `stream from agent ${grant.agentId} broke after ${nextIndex} token(s); not restarted to avoid duplicate text: ${mapped.message}`,
            mapped.code,
            nextIndex,
            grant.agentId,
            { cause: mapped, context: { ...agentContext, tokensReceived: nextIndex } },
          );
        }
        // The agent was full before the first token: wait its hint out and ask the coordinator again.
        if (mapped instanceof CapacityError && (await retryBusy(mapped))) {
          attempt--;
          continue;
        }
        // Retries spent: fail over to another agent like any refusal.
        if (!isFailoverable(mapped)) throw mapped;
        lastAgentError = mapped instanceof CapacityError ? stillBusy(mapped) : mapped;
        excluded.push(grant.agentId);
        if (attempt === request.maxAttempts) {
          throw rewrap(lastAgentError, `${lastAgentError.message} (gave up after ${attempt} attempt(s), agents tried: ${excluded.join(', ')})`);
        }
      } finally {
        deadline.abort();
        deadline.dispose();
      }
    }
  } catch (error) {
    recordGenerationError(traced.span, error);
    throw error;
  } finally {
    traced.span.end();
  }
}

/** A {@link CapacityError} (or {@link QuotaExceededError}, keeping its quota) with another message. */
function sameCapacityError(error: CapacityError, message: string, options: { cause: unknown; context: TitanError['context'] }): CapacityError {
  return error instanceof QuotaExceededError
    ? new QuotaExceededError(message, error.quota, error.retryAfterMs, options)
    : new CapacityError(message, error.retryAfterMs, options);
}

/** Same class of error with a longer message (keeps code and the original as cause). */
function rewrap(error: TitanError, message: string): TitanError {
  const options = { cause: error, context: error.context };
  if (error instanceof CapacityError) return sameCapacityError(error, message, options);
  if (error instanceof ConnectionError) return new ConnectionError(message, error.address, options);
  if (error instanceof AuthError) return new AuthError(message, error.code, options);
  return new UnavailableError(message, options);
}

import { ServerError, Status, type CallContext } from 'nice-grpc-common';
import { z } from 'zod';
import type {
  AgentServiceImplementation,
  AgentStatusRequest,
  AgentStatusResponse,
  DeepPartial,
  StreamRequest,
  StreamResponse,
} from '@titancompute/protocol';
import type { Logger } from '@titancompute/server-kit';
import type { JobSlots, ReleaseSlot } from '../capacity/job-slots.js';
import type { Engine } from '../engines/engine.js';
import { parseGenerationParameters } from '../engines/parameters.js';
import { runGeneration, type GenerationStats } from '../engines/run-generation.js';
import { coalesce } from './coalesce.js';
import { AgentError, EngineError, RequestValidationError, TokenError } from '../errors.js';
import type { StatsSampler } from '../stats/system-stats.js';
import type { TokenVerifier } from '../tokens/token-verifier.js';
import { isAbortError } from '../util/abort.js';
import type { JobTracker } from './job-tracker.js';

/** Limits applied to every StreamRequest. */
export interface RequestLimits {
  /** Largest prompt, bytes (UTF-8). Default 32 KiB. */
  maxPromptBytes: number;
  /** Largest max_tokens accepted. Default 4096. */
  maxTokensLimit: number;
}

/** What the AgentService implementation needs. */
export interface AgentServiceDeps {
  agentId: () => string;
  engine: Engine;
  verifier: TokenVerifier;
  slots: JobSlots;
  tracker: JobTracker;
  /**
   * Resolves once the coordinator has applied the report of the job that just ended (bounded
   * wait); the done message waits for it, so a client that asks again at once finds the slot
   * free. Default: no wait.
   */
  jobEndReported?: () => Promise<void>;
  stats: StatsSampler;
  limits: RequestLimits;
  /** "starting" | "healthy" | "draining". */
  state: () => 'starting' | 'healthy' | 'draining';
  logger: Logger;
}

/** The AgentService implementation plus a way to cut in-flight jobs (drain deadline). */
export interface AgentServiceHandle {
  implementation: AgentServiceImplementation;
  /** Aborts every queued and running job (they end with finish_reason "cancelled"). */
  abortAll(reason: string): void;
}

/** Builds, once per service, the validator of StreamInference requests for these limits. */
function createRequestValidator(limits: RequestLimits): (request: StreamRequest) => void {
  const schema = z.object({
    model: z.string().max(256, 'model is too long'),
    prompt: z
      .string()
      .min(1, 'prompt must not be empty (send the prompt given to RequestInference again)')
      .refine((p) => Buffer.byteLength(p, 'utf8') <= limits.maxPromptBytes, `prompt is larger than ${limits.maxPromptBytes} bytes`),
    maxTokens: z.number().int().min(0, 'max_tokens must be ≥ 0').max(limits.maxTokensLimit, `max_tokens must be ≤ ${limits.maxTokensLimit}`),
    temperature: z.number().refine(Number.isFinite, 'temperature must be a number').pipe(z.number().min(0, 'temperature must be ≥ 0').max(2, 'temperature must be ≤ 2')),
  });
  return (request) => {
    const parsed = schema.safeParse(request);
    if (!parsed.success) {
      const issue = parsed.error.issues[0];
      const field = String(issue?.path[0] ?? 'request').replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);
      throw new RequestValidationError(`${field}: ${issue?.message ?? 'invalid'}`, field);
    }
    parseGenerationParameters(request.options);
  };
}

/**
 * Builds the AgentService: StreamInference (verified token → capacity → engine, streaming)
 * and GetStatus.
 */
export function createAgentService(deps: AgentServiceDeps): AgentServiceHandle {
  const { engine, verifier, slots, tracker, limits, logger } = deps;
  const jobs = new Set<AbortController>();
  const validate = createRequestValidator(limits);

  async function* streamInference(request: StreamRequest, context: CallContext): AsyncGenerator<DeepPartial<StreamResponse>> {
    if (deps.state() === 'draining') throw new ServerError(Status.UNAVAILABLE, 'agent is draining and takes no new work; ask the coordinator for another agent');
    if (deps.state() === 'starting') throw new ServerError(Status.UNAVAILABLE, 'agent is still starting (loading the model)');
    validate(request);
    const grant = await verifyReportingRejection(request);
    return yield* runJob(request, context, grant);
  }

  /**
   * Verifies the request's token. Any refusal of a token whose signature verified (its checks
   * here, or the verifier's: prompt or temperature binding, expiry, replay) reports the job as
   * rejected, so the coordinator frees its reservation at once instead of after the claim window.
   */
  async function verifyReportingRejection(request: StreamRequest): Promise<Awaited<ReturnType<typeof verifier.verify>>> {
    try {
      return await verifyToken(request);
    } catch (err) {
      if (err instanceof TokenError && err.jobId !== undefined) tracker.reject(err.jobId);
      throw err;
    }
  }

  function verifyToken(request: StreamRequest) {
    return verifier.verify(request.sessionToken, (g) => {
      // The token's signature and audience verified (a forged token never gets here): when it is
      // refused, report its job as rejected so the coordinator frees the slot at once.
      try {
        if (request.model !== '' && request.model !== g.model) {
          throw new TokenError(`model ${JSON.stringify(request.model)} does not match the session token's model ${JSON.stringify(g.model)}`, Status.PERMISSION_DENIED);
        }
        if (request.maxTokens > g.maxTokens) {
          throw new TokenError(`max_tokens ${request.maxTokens} is above the session token's limit of ${g.maxTokens}`, Status.PERMISSION_DENIED);
        }
        if (!engine.models.includes(g.model)) {
          throw new ServerError(Status.NOT_FOUND, `model ${g.model} is not served by this agent (serves ${engine.models.join(', ')})`);
        }
      } catch (err) {
        tracker.reject(g.jobId);
        throw err;
      }
    }, { prompt: request.prompt, temperature: request.temperature });
  }

  async function* runJob(request: StreamRequest, context: CallContext, grant: Awaited<ReturnType<typeof verifier.verify>>): AsyncGenerator<DeepPartial<StreamResponse>> {
    const jobId = grant.jobId;
    const maxTokens = request.maxTokens === 0 ? grant.maxTokens : request.maxTokens;
    const temperature = request.temperature === 0 ? grant.temperature : request.temperature;
    const controller = new AbortController();
    const onCallAbort = () => controller.abort(context.signal.reason);
    context.signal.addEventListener('abort', onCallAbort, { once: true });
    if (context.signal.aborted) controller.abort();
    jobs.add(controller);
    let release: ReleaseSlot | undefined;
    let finished = false;
    const finish = (outcome: Omit<Parameters<JobTracker['finish']>[0], 'jobId'>, promptTokens?: number) => {
      if (finished) return;
      finished = true;
      // Free the slot first: the health update that reports the end (sent at once) must show it free.
      release?.();
      tracker.finish({ jobId, ...outcome }, promptTokens);
    };
    tracker.start(jobId);
    try {
      try {
        release = await slots.acquire(controller.signal);
      } catch (err) {
        const error = isAbortError(err) || controller.signal.aborted ? 'cancelled' : 'busy';
        finish({ tokensGenerated: 0, timeToFirstTokenMs: 0, tokensPerSecond: 0, error });
        throw err;
      }
      let stats: GenerationStats | undefined;
      const gen = runGeneration(engine, { model: grant.model, prompt: request.prompt, maxTokens, temperature, parameters: request.options, signal: controller.signal });
      const batches = coalesce(gen);
      try {
        for (;;) {
          const r = await batches.next();
          if (r.done) {
            stats = r.value;
            break;
          }
          yield { content: r.value.text, token: r.value.text, tokenIndex: r.value.tokenIndex, tokenCount: r.value.tokens, createdAt: Date.now() };
        }
      } catch (err) {
        const code = err instanceof EngineError ? err.code : isAbortError(err) ? 'cancelled' : 'engine_error';
        finish({ tokensGenerated: 0, timeToFirstTokenMs: 0, tokensPerSecond: 0, error: code });
        if (!(err instanceof AgentError) && !isAbortError(err)) logger.error({ err, jobId }, 'generation failed');
        throw err;
      } finally {
        if (!stats) {
          controller.abort();
          await batches.return(undefined as never).catch(() => undefined);
          await gen.return(undefined as never).catch(() => undefined);
        }
      }
      const agentId = deps.agentId();
      finish(
        {
          tokensGenerated: stats.tokensGenerated,
          timeToFirstTokenMs: stats.timeToFirstTokenMs,
          tokensPerSecond: stats.tokensPerSecond,
          error: stats.finishReason === 'cancelled' ? (context.signal.aborted ? 'cancelled' : 'deadline') : '',
        },
        stats.promptTokens,
      );
      await deps.jobEndReported?.();
      const round = (n: number) => Math.round(n * 100) / 100;
      yield {
        content: '',
        done: true,
        createdAt: Date.now(),
        tokenIndex: stats.tokensGenerated,
        stats: {
          tokensGenerated: stats.tokensGenerated,
          timeToFirstTokenMs: round(stats.timeToFirstTokenMs),
          tokensPerSecond: round(stats.tokensPerSecond),
          agentId,
          jobId,
          finishReason: stats.finishReason,
          promptTokens: stats.promptTokens,
        },
        metadata: {
          tokens_generated: String(stats.tokensGenerated),
          time_to_first_token_ms: String(round(stats.timeToFirstTokenMs)),
          tokens_per_second: String(round(stats.tokensPerSecond)),
          agent_id: agentId,
          job_id: jobId,
          finish_reason: stats.finishReason,
          prompt_tokens: String(stats.promptTokens),
        },
      };
    } finally {
      // The caller went away mid-stream (the generator was returned): still report the job.
      finish({ tokensGenerated: 0, timeToFirstTokenMs: 0, tokensPerSecond: 0, error: 'cancelled' });
      release?.();
      jobs.delete(controller);
      context.signal.removeEventListener('abort', onCallAbort);
    }
  }

  async function getStatus(request: AgentStatusRequest): Promise<DeepPartial<AgentStatusResponse>> {
    const m = deps.stats.current();
    return {
      agentId: deps.agentId(),
      status: deps.state(),
      freeVramMb: m.freeVramMb,
      freeRamMb: m.freeRamMb,
      activeSessions: slots.running + slots.queued,
      totalRequestsProcessed: tracker.totals.requests,
      modelLoaded: engine.models.join(','),
      runningJobs: slots.running,
      queuedJobs: slots.queued,
      maxJobs: slots.maxConcurrent,
      gpus: m.gpus,
      engine: engine.name,
      tokensPerSecond: Math.round(tracker.recentTokensPerSecond * 100) / 100,
      activeJobIds: request.includeJobs ? tracker.activeJobIds() : [],
      totalTokensGenerated: tracker.totals.tokensGenerated,
    };
  }

  // AgentErrors carry their gRPC status: server-kit's error mapping turns them into
  // ServerErrors (and errors of a call the client cancelled into CANCELLED) before the request
  // log sees them.
  return {
    implementation: { streamInference, getStatus },
    abortAll(reason) {
      for (const c of jobs) c.abort(new Error(reason));
    },
  };
}

import { Status, type CallContext } from 'nice-grpc-common';
import { z } from 'zod';
import type { AgentServiceImplementation, AgentStatusRequest, AgentStatusResponse, DeepPartial, StreamRequest, StreamResponse } from '@titancompute/protocol';
import type { Logger } from '@titancompute/server-kit';
import type { JobSlots, ReleaseSlot } from '../capacity/job-slots.js';
import { CHAT_ROLES, type ChatRole, type Engine } from '../engines/engine.js';
import { parseGenerationParameters } from '../engines/parameters.js';
import { runGeneration, type GenerationStats } from '../engines/run-generation.js';
import { coalesce } from './coalesce.js';
import { AgentError, CapacityError, EngineError, RequestValidationError, TokenError } from '../errors.js';
import type { StatsSampler } from '../stats/system-stats.js';
import type { SessionGrant, TokenVerifier } from '../tokens/token-verifier.js';
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
    prompt: z.string().refine((p) => Buffer.byteLength(p, 'utf8') <= limits.maxPromptBytes, `prompt is larger than ${limits.maxPromptBytes} bytes`),
    messages: z
      .array(z.object({ role: z.enum(CHAT_ROLES, { message: `role must be one of ${CHAT_ROLES.join(', ')}` }), content: z.string() }))
      .refine(
        (ms) => ms.reduce((n, m) => n + Buffer.byteLength(m.content, 'utf8'), 0) <= limits.maxPromptBytes,
        `messages' contents are larger than ${limits.maxPromptBytes} bytes in total`,
      ),
    maxTokens: z.number().int().min(0, 'max_tokens must be ≥ 0').max(limits.maxTokensLimit, `max_tokens must be ≤ ${limits.maxTokensLimit}`),
    temperature: z
      .number()
      .refine(Number.isFinite, 'temperature must be a number')
      .pipe(z.number().min(0, 'temperature must be ≥ 0').max(2, 'temperature must be ≤ 2')),
  });
  return (request) => {
    const parsed = schema.safeParse(request);
    if (!parsed.success) {
      const issue = parsed.error.issues[0];
      const [head, ...rest] = issue?.path ?? [];
      const field = rest.reduce<string>(
        (acc, seg) => (typeof seg === 'number' ? `${acc}[${seg}]` : `${acc}.${String(seg)}`),
        String(head ?? 'request').replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`),
      );
      throw new RequestValidationError(`${field}: ${issue?.message ?? 'invalid'}`, field);
    }
    if (request.prompt === '' && request.messages.length === 0) {
      throw new RequestValidationError('prompt: prompt must not be empty (send the prompt or messages given to RequestInference again)', 'prompt');
    }
    if (request.prompt !== '' && request.messages.length > 0) {
      throw new RequestValidationError('messages: send either prompt or messages, not both', 'messages');
    }
    parseGenerationParameters(request.options);
  };
}

/** An admitted job while its stream runs. */
interface Job {
  jobId: string;
  /** Aborted by the caller's cancellation, `abortAll` or the end of the stream. */
  controller: AbortController;
  /** Frees the job's slot, once it has one. */
  release: ReleaseSlot | undefined;
  /** Whether its end was reported. */
  finished: boolean;
  /** Stops following the call's signal. */
  detach: () => void;
}

/** A job's end as the tracker records it. */
type JobEnd = Omit<Parameters<JobTracker['finish']>[0], 'jobId'>;

const round2 = (n: number) => Math.round(n * 100) / 100;

/** The last message of a stream: `done` with the generation's stats (also as v1's string metadata). */
function doneMessage(agentId: string, jobId: string, stats: GenerationStats): DeepPartial<StreamResponse> {
  return {
    content: '',
    done: true,
    createdAt: Date.now(),
    tokenIndex: stats.tokensGenerated,
    stats: {
      tokensGenerated: stats.tokensGenerated,
      timeToFirstTokenMs: round2(stats.timeToFirstTokenMs),
      tokensPerSecond: round2(stats.tokensPerSecond),
      agentId,
      jobId,
      finishReason: stats.finishReason,
      promptTokens: stats.promptTokens,
    },
    metadata: {
      tokens_generated: String(stats.tokensGenerated),
      time_to_first_token_ms: String(round2(stats.timeToFirstTokenMs)),
      tokens_per_second: String(round2(stats.tokensPerSecond)),
      agent_id: agentId,
      job_id: jobId,
      finish_reason: stats.finishReason,
      prompt_tokens: String(stats.promptTokens),
    },
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

  /**
   * StreamInference: admit the request (state, fields, token), run the job (a slot, then the
   * engine's pieces, streamed), report its end (to the coordinator, then the done message).
   */
  async function* streamInference(request: StreamRequest, context: CallContext): AsyncGenerator<DeepPartial<StreamResponse>> {
    const grant = await admit(request);
    const job = openJob(grant.jobId, context);
    try {
      const stats = yield* run(job, request, grant);
      yield await report(job, stats, context);
    } finally {
      closeJob(job);
    }
  }

  /**
   * Admits a request: the agent takes work, its fields are valid and its token verifies (a
   * refusal of a validly signed token is reported, see {@link verifyReportingRejection}).
   */
  async function admit(request: StreamRequest): Promise<SessionGrant> {
    if (deps.state() === 'draining')
      throw new CapacityError('agent is draining and takes no new work; ask the coordinator for another agent', Status.UNAVAILABLE);
    if (deps.state() === 'starting') throw new CapacityError('agent is still starting (loading the model)', Status.UNAVAILABLE);
    validate(request);
    return verifyReportingRejection(request);
  }

  /**
   * Verifies the request's token. Any refusal of a token whose signature verified (the checks
   * below, or the verifier's: prompt, messages, temperature or options binding, expiry, replay)
   * reports the job as rejected, once, so the coordinator frees its reservation at once instead
   * of after the claim window. A forged token has no trusted job id and reports nothing.
   */
  async function verifyReportingRejection(request: StreamRequest): Promise<SessionGrant> {
    let authorizedJobId: string | undefined;
    try {
      return await verifier.verify(
        request.sessionToken,
        (g) => {
          authorizedJobId = g.jobId;
          authorize(request, g);
        },
        { prompt: request.prompt, messages: request.messages, temperature: request.temperature, options: request.options },
      );
    } catch (err) {
      const jobId = (err instanceof TokenError ? err.jobId : undefined) ?? authorizedJobId;
      if (jobId !== undefined) tracker.reject(jobId);
      throw err;
    }
  }

  /** The agent's own checks of a verified grant against the request. */
  function authorize(request: StreamRequest, g: SessionGrant): void {
    if (request.model !== '' && request.model !== g.model) {
      throw new TokenError(
        `model ${JSON.stringify(request.model)} does not match the session token's model ${JSON.stringify(g.model)}`,
        Status.PERMISSION_DENIED,
      );
    }
    if (request.maxTokens > g.maxTokens) {
      throw new TokenError(`max_tokens ${request.maxTokens} is above the session token's limit of ${g.maxTokens}`, Status.PERMISSION_DENIED);
    }
    // No options sent: the granted parameters are used, so they must parse here (before the token is used up).
    if (Object.keys(request.options).length === 0) parseGenerationParameters(g.parameters);
    if (!engine.models.includes(g.model)) {
      throw new EngineError(`model ${g.model} is not served by this agent (serves ${engine.models.join(', ')})`, 'model_not_found', { model: g.model });
    }
  }

  /** Starts tracking an admitted job: its abort controller follows the call's signal and `abortAll`. */
  function openJob(jobId: string, context: CallContext): Job {
    const controller = new AbortController();
    const onCallAbort = () => controller.abort(context.signal.reason);
    context.signal.addEventListener('abort', onCallAbort, { once: true });
    if (context.signal.aborted) controller.abort();
    jobs.add(controller);
    const job: Job = {
      jobId,
      controller,
      release: undefined,
      finished: false,
      detach: () => context.signal.removeEventListener('abort', onCallAbort),
    };
    tracker.start(jobId);
    return job;
  }

  /**
   * Reports a job's end once: frees its slot first (the health update that reports the end,
   * sent at once, must show it free), then tells the tracker.
   */
  function finish(job: Job, outcome: JobEnd, promptTokens?: number): void {
    if (job.finished) return;
    job.finished = true;
    job.release?.();
    tracker.finish({ jobId: job.jobId, ...outcome }, promptTokens);
  }

  /** Ends a job however its stream ended: a caller that went away mid-stream still gets it reported. */
  function closeJob(job: Job): void {
    finish(job, { tokensGenerated: 0, timeToFirstTokenMs: 0, tokensPerSecond: 0, error: 'cancelled' });
    job.release?.();
    jobs.delete(job.controller);
    job.detach();
  }

  /**
   * Runs an admitted job: waits for a slot, then streams the engine's pieces (coalesced) as
   * they come. Returns the generation's stats; a refusal or failure is reported before it is thrown.
   */
  async function* run(job: Job, request: StreamRequest, grant: SessionGrant): AsyncGenerator<DeepPartial<StreamResponse>, GenerationStats> {
    const { controller } = job;
    try {
      job.release = await slots.acquire(controller.signal);
    } catch (err) {
      const error = isAbortError(err) || controller.signal.aborted ? 'cancelled' : 'busy';
      finish(job, { tokensGenerated: 0, timeToFirstTokenMs: 0, tokensPerSecond: 0, error });
      throw err;
    }
    const maxTokens = request.maxTokens === 0 ? grant.maxTokens : request.maxTokens;
    const temperature = request.temperature === 0 ? grant.temperature : request.temperature;
    // Empty options = the granted parameters (the verifier refused any other non-empty set).
    const parameters = Object.keys(request.options).length === 0 ? grant.parameters : request.options;
    let stats: GenerationStats | undefined;
    const messages = request.messages.length > 0 ? request.messages.map((m) => ({ role: m.role as ChatRole, content: m.content })) : undefined;
    const gen = runGeneration(engine, { model: grant.model, prompt: request.prompt, messages, maxTokens, temperature, parameters, signal: controller.signal });
    const batches = coalesce(gen);
    try {
      for (;;) {
        const r = await batches.next();
        if (r.done) {
          stats = r.value;
          return stats;
        }
        yield { content: r.value.text, token: r.value.text, tokenIndex: r.value.tokenIndex, tokenCount: r.value.tokens, createdAt: Date.now() };
      }
    } catch (err) {
      const code = err instanceof EngineError ? err.code : isAbortError(err) ? 'cancelled' : 'engine_error';
      finish(job, { tokensGenerated: 0, timeToFirstTokenMs: 0, tokensPerSecond: 0, error: code });
      if (!(err instanceof AgentError) && !isAbortError(err)) logger.error({ err, jobId: job.jobId }, 'generation failed');
      throw err;
    } finally {
      if (!stats) {
        controller.abort();
        await batches.return(undefined as never).catch(() => undefined);
        await gen.return(undefined as never).catch(() => undefined);
      }
    }
  }

  /**
   * Reports a finished generation: to the tracker (the coordinator hears of it at once), waits
   * (bounded) for the coordinator to apply it, then returns the done message with the stats.
   */
  async function report(job: Job, stats: GenerationStats, context: CallContext): Promise<DeepPartial<StreamResponse>> {
    const agentId = deps.agentId();
    finish(
      job,
      {
        tokensGenerated: stats.tokensGenerated,
        timeToFirstTokenMs: stats.timeToFirstTokenMs,
        tokensPerSecond: stats.tokensPerSecond,
        error: stats.finishReason === 'cancelled' ? (context.signal.aborted ? 'cancelled' : 'deadline') : '',
      },
      stats.promptTokens,
    );
    await deps.jobEndReported?.();
    return doneMessage(agentId, job.jobId, stats);
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
      tokensPerSecond: round2(tracker.recentTokensPerSecond),
      activeJobIds: request.includeJobs ? tracker.activeJobIds() : [],
      totalTokensGenerated: tracker.totals.tokensGenerated,
    };
  }

  // Nothing is mapped here: every error thrown above is an AgentError declaring its gRPC status,
  // which server-kit's one error-mapping middleware turns into the ServerError callers see.
  return {
    implementation: { streamInference, getStatus },
    abortAll(reason) {
      for (const c of jobs) c.abort(new Error(reason));
    },
  };
}

import type { Context, Span } from '@opentelemetry/api';
import { Status } from 'nice-grpc-common';
import { embeddingsGrantInput, OPENAI_EMBEDDINGS_TASK, OPENAI_TASK_PARAMETER, TRACE_ATTRIBUTES } from '@titancompute/protocol';
import { failSpan, startChildSpan, type Logger } from '@titancompute/server-kit';
import type { JobSlots, ReleaseSlot } from '../capacity/job-slots.js';
import type { ChatRole, EmbedResult, Engine } from '../engines/engine.js';
import { parseGenerationParameters } from '../engines/parameters.js';
import { runGeneration, type GenerationStats } from '../engines/run-generation.js';
import { AgentError, CapacityError, EngineError, RequestValidationError, TokenError } from '../errors.js';
import type { AgentMetrics, ModelMetrics } from '../metrics/agent-metrics.js';
import type { AdmittedToken, RequestBinding, SessionGrant, TokenVerifier } from '../tokens/token-verifier.js';
import { isAbortError } from '../util/abort.js';
import { coalesce, type Batch } from './coalesce.js';
import { createEmbeddingsValidator, createGenerationValidator } from './job-request-validation.js';
import type { JobTracker } from './job-tracker.js';

/** Limits applied to every job request, whatever its transport. */
export interface RequestLimits {
  /** Largest prompt, bytes (UTF-8); also the largest total of chat message contents and of embedding inputs. Default 32 KiB. */
  maxPromptBytes: number;
  /** Largest max_tokens accepted. Default 4096. */
  maxTokensLimit: number;
}

/** Whether the agent takes work: `starting` (loading the model) and `draining` refuse it. */
export type AgentState = 'starting' | 'healthy' | 'draining';

/** What {@link createJobRunner} needs. */
export interface JobRunnerDeps {
  engine: Engine;
  verifier: TokenVerifier;
  slots: JobSlots;
  tracker: JobTracker;
  /**
   * Resolves once the coordinator has applied the report of the job that just ended (bounded
   * wait); a job's last answer waits for it, so a client that asks again at once finds the slot
   * free. Default: no wait.
   */
  jobEndReported?: () => Promise<void>;
  limits: RequestLimits;
  state: () => AgentState;
  logger: Logger;
  /** Prometheus metrics of the jobs (queue time, time to first token, tokens, …); none when absent. */
  metrics?: AgentMetrics;
}

/**
 * A generation asked through any transport, in StreamRequest's terms: an unset field (`model`
 * "", `maxTokens` 0, `temperature` 0, `options` {}) takes the session token's value.
 */
export interface GenerationJobRequest {
  sessionToken: string;
  /** Must be the token's model; "" = the token's. */
  model: string;
  /** The raw prompt; "" when `messages` are sent. */
  prompt: string;
  /** A chat conversation instead of `prompt`; empty when a prompt is sent. */
  messages: readonly { role: string; content: string }[];
  /** At most the token's; 0 = the token's. */
  maxTokens: number;
  /** The token's (to float32 precision); 0 = the token's. */
  temperature: number;
  /** Exactly the token's parameters; {} = the token's. */
  options: Readonly<Record<string, string>>;
}

/** An embeddings request (`POST /v1/embeddings`): its token binds {@link embeddingsGrantInput} of `input`. */
export interface EmbeddingsJobRequest {
  sessionToken: string;
  /** Must be the token's model. */
  model: string;
  /** The texts to embed (non-empty, each non-empty). */
  input: readonly string[];
}

/** An admitted generation: its token is used up and the job counted; {@link GenerationJob.close} must follow. */
export interface GenerationJob {
  /** What the token granted (job id, model, limits). */
  readonly grant: SessionGrant;
  /**
   * Waits for the job's slot (idempotent; `run` waits for it too): throws {@link CapacityError}
   * RESOURCE_EXHAUSTED at once when the queue is full, or the abort reason when the job is
   * cancelled while queued; either is reported before it is thrown. A transport that must
   * answer before the first token (HTTP headers) awaits it first.
   */
  acquireSlot(): Promise<void>;
  /**
   * Waits for the slot, then yields the engine's text as it comes, coalesced while the caller is
   * busy writing. The engine starts at once, but nothing is yielded before the token's use is on
   * disk (the replay store's flush overlaps with the prompt's evaluation). Returns the stats once
   * the job's end is reported (to the tracker, then a bounded wait for the coordinator). A
   * refusal or failure is reported before it is thrown. Call once.
   */
  run(): AsyncGenerator<Batch, GenerationStats>;
  /**
   * Ends the job however it went (idempotent; call in a `finally`): a job that did not finish is
   * reported cancelled, its engine work is aborted and its slot freed.
   */
  close(): void;
}

/** A finished embeddings job. */
export interface EmbeddingsJobResult extends EmbedResult {
  /** What the token granted (job id, model). */
  grant: SessionGrant;
}

/**
 * The agent's job pipeline, the same for every transport (gRPC StreamInference, the HTTP
 * `/v1/*` routes): admit (state, fields, token verification with rejection reporting), a slot,
 * the engine, the report of the job's end. Every refusal is an {@link AgentError} declaring
 * its gRPC status; transports map that status to their own.
 */
export interface JobRunner {
  /**
   * Admits a generation: the agent takes work, the fields are valid and the token verifies
   * against them (a refusal of a validly signed token is reported at once, so the coordinator
   * frees its reservation). `signal` is the caller's: aborting it cancels the job.
   * `traceContext` (the transport's server span, when it records) parents the job's spans:
   * `titan.queue_wait` (admitted → slot), `titan.prompt_evaluation` (slot → first token) and
   * `titan.generation` (first token → end; tokens and finish reason).
   */
  admitGeneration(request: GenerationJobRequest, signal: AbortSignal, traceContext?: Context): Promise<GenerationJob>;
  /**
   * Runs an embeddings job end to end (admit as above, but the token must be an embeddings
   * grant and the engine must embed; a slot; `engine.embed`; the report, with the inputs'
   * tokens as prompt tokens and no generated tokens).
   */
  embed(request: EmbeddingsJobRequest, signal: AbortSignal): Promise<EmbeddingsJobResult>;
  /** Aborts every queued and running job (they end cancelled). */
  abortAll(reason: string): void;
}

/** An admitted job while it runs. */
interface Job {
  jobId: string;
  /** Aborted by the caller's signal, `abortAll` or the job's close. */
  controller: AbortController;
  /** The caller's signal: aborted means the caller went away (not a deadline). */
  callerSignal: AbortSignal;
  /** Frees the job's slot, once it has one. */
  release: ReleaseSlot | undefined;
  /** Whether its end was reported. */
  finished: boolean;
  /** Stops following the caller's signal. */
  detach: () => void;
  /** Resolves once the job's token is used up on disk (see {@link AdmittedToken}). */
  recorded: Promise<void>;
  /** The job's model's metrics, when the agent keeps them. */
  metrics: ModelMetrics | undefined;
  /** When it was admitted (`performance.now()`). */
  openedAt: number;
  /** When its slot was granted (`performance.now()`), once it has one. */
  startedAt: number | undefined;
  /** Its time to first token from admission, once a generation reported it. */
  ttftSeconds: number | undefined;
  /** The trace context its spans are started in (undefined: untraced). */
  trace: Context | undefined;
  /** Its `titan.queue_wait` span while it waits for a slot. */
  queueSpan: Span | undefined;
}

/** A job's end as the tracker records it. */
type JobEnd = Omit<Parameters<JobTracker['finish']>[0], 'jobId'>;

/** The end of a job that generated nothing, with its error code. */
const failedEnd = (error: string): JobEnd => ({ tokensGenerated: 0, timeToFirstTokenMs: 0, tokensPerSecond: 0, error, promptTokens: 0 });

/**
 * The code a failed job is reported with: the engine's, `cancelled` for an abort, `unavailable`
 * for the agent's own UNAVAILABLE (the replay store could not flush), else `engine_error`.
 */
const failureCode = (err: unknown, signal: AbortSignal) =>
  err instanceof EngineError
    ? err.code
    : isAbortError(err) || signal.aborted
      ? 'cancelled'
      : err instanceof AgentError && err.grpcStatus === Status.UNAVAILABLE
        ? 'unavailable'
        : 'engine_error';

/** Creates the {@link JobRunner} over the agent's engine, verifier, slots and tracker. */
export function createJobRunner(deps: JobRunnerDeps): JobRunner {
  const { engine, verifier, slots, tracker, limits, logger } = deps;
  const jobs = new Set<AbortController>();
  const validateGeneration = createGenerationValidator(limits);
  const validateEmbeddings = createEmbeddingsValidator(limits);

  /** Refuses work while starting or draining (UNAVAILABLE). */
  function checkState(): void {
    if (deps.state() === 'draining')
      throw new CapacityError('agent is draining and takes no new work; ask the coordinator for another agent', Status.UNAVAILABLE);
    if (deps.state() === 'starting') throw new CapacityError('agent is still starting (loading the model)', Status.UNAVAILABLE);
  }

  /**
   * Verifies a request's token. Any refusal of a token whose signature verified (`authorize`,
   * or the verifier's checks: prompt, messages, temperature or options binding, expiry, replay)
   * reports the job as rejected, once, so the coordinator frees its reservation at once instead
   * of after the claim window. A forged token has no trusted job id and reports nothing.
   */
  async function verifyReportingRejection(token: string, authorize: (g: SessionGrant) => void, binding: RequestBinding): Promise<AdmittedToken> {
    let authorizedJobId: string | undefined;
    try {
      return await verifier.admit(
        token,
        (g) => {
          authorizedJobId = g.jobId;
          authorize(g);
        },
        binding,
      );
    } catch (err) {
      const jobId = (err instanceof TokenError ? err.jobId : undefined) ?? authorizedJobId;
      if (jobId !== undefined) tracker.reject(jobId);
      throw err;
    }
  }

  /** The token is for the requested model (or none was named). */
  function checkModel(model: string, g: SessionGrant): void {
    if (model !== '' && model !== g.model) {
      throw new TokenError(`model ${JSON.stringify(model)} does not match the session token's model ${JSON.stringify(g.model)}`, Status.PERMISSION_DENIED);
    }
  }

  /** The engine serves the token's model (NOT_FOUND naming the models it serves). */
  function checkServed(g: SessionGrant): void {
    if (!engine.models.includes(g.model)) {
      throw new EngineError(`model ${g.model} is not served by this agent (serves ${engine.models.join(', ')})`, 'model_not_found', { model: g.model });
    }
  }

  const isEmbeddingsGrant = (g: SessionGrant) => g.parameters[OPENAI_TASK_PARAMETER] === OPENAI_EMBEDDINGS_TASK;

  /** The agent's own checks of a verified grant against a generation request. */
  function authorizeGeneration(request: GenerationJobRequest, g: SessionGrant): void {
    checkModel(request.model, g);
    if (isEmbeddingsGrant(g)) throw new TokenError('the session token grants embeddings, not a generation', Status.PERMISSION_DENIED, { field: 'parameters' });
    if (request.maxTokens > g.maxTokens) {
      throw new TokenError(`max_tokens ${request.maxTokens} is above the session token's limit of ${g.maxTokens}`, Status.PERMISSION_DENIED);
    }
    // No options sent: the granted parameters are used, so they must parse here (before the token is used up).
    if (Object.keys(request.options).length === 0) parseGenerationParameters(g.parameters);
    checkServed(g);
  }

  /** The agent's own checks of a verified grant against an embeddings request. */
  function authorizeEmbeddings(request: EmbeddingsJobRequest, g: SessionGrant): void {
    checkModel(request.model, g);
    if (!isEmbeddingsGrant(g)) throw new TokenError('the session token grants a generation, not embeddings', Status.PERMISSION_DENIED, { field: 'parameters' });
    checkServed(g);
    if (!engine.embed) throw new RequestValidationError(`model ${JSON.stringify(g.model)} on this agent cannot embed`, 'model', 'model_not_supported');
  }

  /** Starts tracking an admitted job: its abort controller follows the caller's signal and `abortAll`. */
  function openJob(jobId: string, model: string, signal: AbortSignal, recorded: Promise<void>, trace?: Context): Job {
    const controller = new AbortController();
    const onCallerAbort = () => controller.abort(signal.reason);
    signal.addEventListener('abort', onCallerAbort, { once: true });
    if (signal.aborted) controller.abort();
    jobs.add(controller);
    tracker.start(jobId);
    const metrics = deps.metrics?.model(model);
    metrics?.queued();
    return {
      jobId,
      controller,
      callerSignal: signal,
      release: undefined,
      finished: false,
      detach: () => signal.removeEventListener('abort', onCallerAbort),
      recorded,
      metrics,
      openedAt: performance.now(),
      startedAt: undefined,
      ttftSeconds: undefined,
      trace,
      queueSpan: startChildSpan('titan.queue_wait', trace, { [TRACE_ATTRIBUTES.jobId]: jobId }),
    };
  }

  /**
   * Reports a job's end once: frees its slot first (the health update that reports the end,
   * sent at once, must show it free), then tells the tracker.
   */
  function finish(job: Job, end: JobEnd): void {
    if (job.finished) return;
    job.finished = true;
    job.release?.();
    tracker.finish({ jobId: job.jobId, ...end });
    job.metrics?.ended({
      ran: job.startedAt !== undefined,
      promptTokens: end.promptTokens,
      generationTokens: end.tokensGenerated,
      ttftSeconds: job.ttftSeconds,
      e2eSeconds: end.error === '' ? (performance.now() - job.openedAt) / 1000 : undefined,
    });
  }

  /** Ends a job however it went: a caller that went away mid-job still gets it reported (cancelled). */
  function closeJob(job: Job): void {
    finish(job, failedEnd('cancelled'));
    // Closed before it had a slot (the caller went away, or never ran it).
    job.queueSpan?.end();
    job.queueSpan = undefined;
    job.release?.();
    job.controller.abort();
    jobs.delete(job.controller);
    job.detach();
  }

  /** Waits for a slot; a refusal (queue full: `busy`) or a cancellation while queued is reported before it is thrown. */
  async function acquireSlot(job: Job): Promise<void> {
    try {
      job.release = await slots.acquire(job.controller.signal);
      job.startedAt = performance.now();
      job.metrics?.started((job.startedAt - job.openedAt) / 1000);
      job.queueSpan?.end();
      job.queueSpan = undefined;
    } catch (err) {
      finish(job, failedEnd(isAbortError(err) || job.controller.signal.aborted ? 'cancelled' : 'busy'));
      failSpan(job.queueSpan, err);
      job.queueSpan = undefined;
      throw err;
    }
  }

  /** Reports a failed job (logging what is not the agent's own refusal or an abort). */
  function fail(job: Job, err: unknown): void {
    const code = failureCode(err, job.controller.signal);
    if (err instanceof EngineError || code === 'engine_error') job.metrics?.engineError(code);
    finish(job, failedEnd(code));
    if (!(err instanceof AgentError) && !isAbortError(err)) logger.error({ err, jobId: job.jobId }, 'job failed');
  }

  /**
   * Runs an admitted generation: a slot, then the engine's pieces (coalesced) as they come, then
   * the report of its end (to the tracker; a bounded wait for the coordinator). Returns the stats.
   */
  async function* generate(job: Job, request: GenerationJobRequest, grant: SessionGrant, slot: () => Promise<void>): AsyncGenerator<Batch, GenerationStats> {
    await slot();
    const { controller } = job;
    const maxTokens = request.maxTokens === 0 ? grant.maxTokens : request.maxTokens;
    const temperature = request.temperature === 0 ? grant.temperature : request.temperature;
    // Empty options = the granted parameters (the verifier refused any other non-empty set).
    const parameters = Object.keys(request.options).length === 0 ? grant.parameters : { ...request.options };
    const messages = request.messages.length > 0 ? request.messages.map((m) => ({ role: m.role as ChatRole, content: m.content })) : undefined;
    const gen = runGeneration(
      engine,
      { model: grant.model, prompt: request.prompt, messages, maxTokens, temperature, parameters, signal: controller.signal },
      job.metrics?.interToken,
    );
    const batches = coalesce(gen);
    let stats: GenerationStats | undefined;
    let recorded = false;
    // Prompt evaluation: from the engine's start to its first token; then the generation.
    let promptSpan = startChildSpan('titan.prompt_evaluation', job.trace, {
      [TRACE_ATTRIBUTES.jobId]: job.jobId,
      [TRACE_ATTRIBUTES.genAiRequestModel]: grant.model,
    });
    let generationSpan: Span | undefined;
    try {
      for (;;) {
        const r = await batches.next();
        if (promptSpan) {
          promptSpan.end();
          promptSpan = undefined;
          if (!r.done) generationSpan = startChildSpan('titan.generation', job.trace, { [TRACE_ATTRIBUTES.jobId]: job.jobId });
        }
        if (!recorded) {
          // Nothing leaves before the token's use is on disk (usually long done: it overlapped with the prompt).
          await job.recorded;
          recorded = true;
        }
        if (r.done) {
          stats = r.value;
          break;
        }
        yield r.value;
      }
    } catch (err) {
      fail(job, err);
      failSpan(promptSpan ?? generationSpan, err);
      promptSpan = generationSpan = undefined;
      throw err;
    } finally {
      // Stopped early (the caller went away): the open span ends here.
      promptSpan?.end();
      if (!stats) generationSpan?.end();
      if (!stats) {
        controller.abort();
        await batches.return(undefined as never).catch(() => undefined);
        await gen.return(undefined as never).catch(() => undefined);
      }
    }
    // Cancelled while the caller is still there: cut by the drain deadline.
    const error = stats.finishReason === 'cancelled' ? (job.callerSignal.aborted ? 'cancelled' : 'deadline') : '';
    // From admission: the slot's wait, then the engine's own time to first token.
    if (stats.tokensGenerated > 0 && job.startedAt !== undefined) job.ttftSeconds = (job.startedAt - job.openedAt + stats.timeToFirstTokenMs) / 1000;
    if (generationSpan) {
      generationSpan.setAttributes({
        [TRACE_ATTRIBUTES.genAiUsageInputTokens]: stats.promptTokens,
        [TRACE_ATTRIBUTES.genAiUsageOutputTokens]: stats.tokensGenerated,
        [TRACE_ATTRIBUTES.genAiResponseFinishReasons]: [stats.finishReason],
      });
      generationSpan.end();
    }
    finish(job, {
      tokensGenerated: stats.tokensGenerated,
      timeToFirstTokenMs: stats.timeToFirstTokenMs,
      tokensPerSecond: stats.tokensPerSecond,
      error,
      promptTokens: stats.promptTokens,
    });
    await deps.jobEndReported?.();
    return stats;
  }

  return {
    async admitGeneration(request, signal, traceContext) {
      checkState();
      validateGeneration(request);
      const { grant, recorded } = await verifyReportingRejection(request.sessionToken, (g) => authorizeGeneration(request, g), {
        prompt: request.prompt,
        messages: request.messages,
        temperature: request.temperature,
        options: request.options,
      });
      const job = openJob(grant.jobId, grant.model, signal, recorded, traceContext);
      let slot: Promise<void> | undefined;
      const acquire = () => {
        slot ??= acquireSlot(job);
        return slot;
      };
      return { grant, acquireSlot: acquire, run: () => generate(job, request, grant, acquire), close: () => closeJob(job) };
    },

    async embed(request, signal) {
      checkState();
      validateEmbeddings(request);
      const { prompt, parameters } = embeddingsGrantInput(request.input);
      const { grant, recorded } = await verifyReportingRejection(request.sessionToken, (g) => authorizeEmbeddings(request, g), {
        prompt,
        temperature: 0,
        options: parameters,
      });
      const job = openJob(grant.jobId, grant.model, signal, recorded);
      try {
        await acquireSlot(job);
        let result: EmbedResult;
        try {
          // authorizeEmbeddings refused an engine without embed.
          result = await engine.embed!({ model: grant.model, input: request.input, signal: job.controller.signal });
          // Nothing leaves before the token's use is on disk.
          await job.recorded;
        } catch (err) {
          fail(job, err);
          // Cut by the drain deadline (the caller, if it went away, hears nothing).
          if (job.controller.signal.aborted && !(err instanceof AgentError)) {
            throw new CapacityError('the job was cancelled: the agent is shutting down', Status.UNAVAILABLE);
          }
          throw err;
        }
        finish(job, { tokensGenerated: 0, timeToFirstTokenMs: 0, tokensPerSecond: 0, error: '', promptTokens: result.promptTokens });
        await deps.jobEndReported?.();
        return { grant, embeddings: result.embeddings, promptTokens: result.promptTokens };
      } finally {
        closeJob(job);
      }
    },

    abortAll(reason) {
      for (const c of jobs) c.abort(new Error(reason));
    },
  };
}

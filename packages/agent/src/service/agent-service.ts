import type { CallContext } from 'nice-grpc-common';
import {
  SERVICE_NAMES,
  TRACE_ATTRIBUTES,
  type AgentServiceImplementation,
  type AgentStatusRequest,
  type AgentStatusResponse,
  type DeepPartial,
  type StreamRequest,
  type StreamResponse,
} from '@titancompute/protocol';
import { startRpcServerSpan } from '@titancompute/server-kit';
import type { JobSlots } from '../capacity/job-slots.js';
import type { Engine } from '../engines/engine.js';
import type { GenerationStats } from '../engines/run-generation.js';
import type { StatsSampler } from '../stats/system-stats.js';
import type { AgentState, JobRunner } from './job-runner.js';
import type { JobTracker } from './job-tracker.js';

export type { RequestLimits } from './job-runner.js';

/** What the AgentService implementation needs. */
export interface AgentServiceDeps {
  agentId: () => string;
  engine: Engine;
  /** The job pipeline StreamInference adapts (shared with the HTTP routes). */
  runner: JobRunner;
  slots: JobSlots;
  tracker: JobTracker;
  stats: StatsSampler;
  state: () => AgentState;
}

/** The AgentService implementation plus a way to cut in-flight jobs (drain deadline). */
export interface AgentServiceHandle {
  implementation: AgentServiceImplementation;
  /** Aborts every queued and running job, of every transport (they end with finish_reason "cancelled"). */
  abortAll(reason: string): void;
}

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
 * Builds the AgentService: StreamInference (a thin adapter over the {@link JobRunner}: verified
 * token → capacity → engine, streamed, then the done message) and GetStatus.
 */
export function createAgentService(deps: AgentServiceDeps): AgentServiceHandle {
  const { engine, runner, slots, tracker } = deps;

  /**
   * StreamInference: admit the request (state, fields, token), run the job (a slot, then the
   * engine's pieces, streamed), report its end (to the coordinator, then the done message).
   * Traced as a SERVER span, a child of the caller's `traceparent` (the job's spans under it).
   */
  async function* streamInference(request: StreamRequest, context: CallContext): AsyncGenerator<DeepPartial<StreamResponse>> {
    const call = startRpcServerSpan(SERVICE_NAMES.agent, 'StreamInference', context.metadata);
    const traced = call.span.isRecording();
    let failure: unknown;
    try {
      const job = await runner.admitGeneration(request, context.signal, call.context);
      if (traced) {
        call.span.setAttributes({
          [TRACE_ATTRIBUTES.agentId]: deps.agentId(),
          [TRACE_ATTRIBUTES.jobId]: job.grant.jobId,
          [TRACE_ATTRIBUTES.clientId]: job.grant.clientId,
          [TRACE_ATTRIBUTES.genAiRequestModel]: job.grant.model,
        });
      }
      // The job's batches as StreamResponse messages, mapped here rather than in a generator of
      // their own (one async generator level less for every message). Stopping early (the call
      // went away) returns the job's generator, which aborts the engine.
      const batches = job.run();
      try {
        let stats: GenerationStats;
        try {
          for (;;) {
            const r = await batches.next();
            if (r.done) {
              stats = r.value;
              break;
            }
            yield { content: r.value.text, token: r.value.text, tokenIndex: r.value.tokenIndex, tokenCount: r.value.tokens, createdAt: Date.now() };
          }
        } finally {
          await batches.return(undefined as never).catch(() => undefined);
        }
        if (traced) {
          call.span.setAttributes({
            [TRACE_ATTRIBUTES.genAiUsageInputTokens]: stats.promptTokens,
            [TRACE_ATTRIBUTES.genAiUsageOutputTokens]: stats.tokensGenerated,
            [TRACE_ATTRIBUTES.genAiResponseFinishReasons]: [stats.finishReason],
          });
        }
        yield doneMessage(deps.agentId(), job.grant.jobId, stats);
      } finally {
        job.close();
      }
    } catch (err) {
      failure = err;
      throw err;
    } finally {
      call.end(failure, context.signal);
    }
  }

  async function getStatus(request: AgentStatusRequest): Promise<DeepPartial<AgentStatusResponse>> {
    const m = deps.stats.current();
    // Prompt tokens looked up in the engine's prefix cache and found there, all models together.
    const prefixCounts = engine.prefixCache?.()?.counts ?? [];
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
      prefixCacheQueryTokens: prefixCounts.reduce((n, c) => n + c.queryTokens, 0),
      prefixCacheHitTokens: prefixCounts.reduce((n, c) => n + c.hitTokens, 0),
    };
  }

  // Nothing is mapped here: every error the runner throws is an AgentError declaring its gRPC
  // status, which server-kit's one error-mapping middleware turns into the ServerError callers see.
  return {
    implementation: { streamInference, getStatus },
    abortAll: (reason) => runner.abortAll(reason),
  };
}

/**
 * The SDK's OpenTelemetry spans, through `@opentelemetry/api` only: the application registers
 * its own tracer provider and propagator (or none: every span is the API's no-op and nothing is
 * sent). The CLI sets one up itself when `OTEL_EXPORTER_OTLP_ENDPOINT` is set (`cli/tracing.ts`).
 */
import { context, SpanKind, SpanStatusCode, trace, type Context, type Span } from '@opentelemetry/api';
import { TRACE_ATTRIBUTES, TRACER_NAME } from '@titancompute/protocol';
import type { GenerationStats } from './types.js';

/** The span of one generation (generate or chat) and the context its calls carry. */
export interface GenerationSpan {
  readonly span: Span;
  /** The span's context: injected into RequestInference and StreamInference as `traceparent`. */
  readonly context: Context;
}

/**
 * Starts the CLIENT span of a generation, `titan.generate` or `titan.chat`, under the caller's
 * active span (if any): `gen_ai.operation.name`, `gen_ai.request.model`,
 * `gen_ai.request.max_tokens` (when set), `titan.client.id`. Never the prompt or messages.
 */
export function startGenerationSpan(chat: boolean, model: string, maxTokens: number, clientId: string): GenerationSpan {
  const parent = context.active();
  const span = trace.getTracer(TRACER_NAME).startSpan(
    chat ? 'titan.chat' : 'titan.generate',
    {
      kind: SpanKind.CLIENT,
      attributes: {
        [TRACE_ATTRIBUTES.genAiOperationName]: chat ? 'chat' : 'text_completion',
        [TRACE_ATTRIBUTES.genAiRequestModel]: model,
        [TRACE_ATTRIBUTES.clientId]: clientId,
        ...(maxTokens > 0 ? { [TRACE_ATTRIBUTES.genAiRequestMaxTokens]: maxTokens } : {}),
      },
    },
    parent,
  );
  return { span, context: trace.setSpan(parent, span) };
}

/** Records a finished generation's outcome on its span: agent, job, tokens, finish reason, attempts. */
export function recordGenerationStats(span: Span, stats: GenerationStats): void {
  if (!span.isRecording()) return;
  span.setAttributes({
    [TRACE_ATTRIBUTES.agentId]: stats.agentId,
    [TRACE_ATTRIBUTES.jobId]: stats.jobId,
    [TRACE_ATTRIBUTES.genAiUsageInputTokens]: stats.promptTokens,
    [TRACE_ATTRIBUTES.genAiUsageOutputTokens]: stats.tokens,
    [TRACE_ATTRIBUTES.genAiResponseFinishReasons]: [stats.finishReason],
    [TRACE_ATTRIBUTES.attempts]: stats.attempts,
  });
}

/** Marks a generation's span failed: `error.type` (the error's class) and an error status with its message. */
export function recordGenerationError(span: Span, err: unknown): void {
  if (!span.isRecording()) return;
  span.setAttribute(TRACE_ATTRIBUTES.errorType, err instanceof Error ? err.name : 'Error');
  span.setStatus({ code: SpanStatusCode.ERROR, message: err instanceof Error ? err.message : String(err) });
}

/**
 * Records on a generation's span that a coordinator could not be used before the first token and
 * the next one is asked: event `titan.coordinator_failover` with `titan.coordinator.from`,
 * `titan.coordinator.to` and `error.type`.
 */
export function recordCoordinatorFailover(span: Span, from: string, to: string, err: unknown): void {
  if (!span.isRecording()) return;
  span.addEvent('titan.coordinator_failover', {
    'titan.coordinator.from': from,
    'titan.coordinator.to': to,
    [TRACE_ATTRIBUTES.errorType]: err instanceof Error ? err.name : 'Error',
  });
}

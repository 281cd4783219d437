import { randomUUID } from 'node:crypto';
import { Status } from 'nice-grpc-common';
import { OpenAiRequestError, openAiError, type OpenAiErrorBody } from '@titancompute/protocol';
import { isGrpcMappedError, type Logger } from '@titancompute/server-kit';
import { RequestValidationError, TokenError } from '../errors.js';
import { isAbortError } from '../util/abort.js';

/** One OpenAI-shaped answer for a gRPC status an error declares: the HTTP status and OpenAI's `code`. */
interface OpenAiErrorMapping {
  readonly status: number;
  readonly code: string;
}

/**
 * The one table from the gRPC status an agent error declares (the status gRPC callers of
 * StreamInference see) to the HTTP routes' answer, with OpenAI's statuses. Unlisted statuses
 * and undeclared errors are 500 `internal_error` with a reference id (details logged only).
 */
export const OPENAI_ERROR_BY_GRPC_STATUS: ReadonlyMap<Status, OpenAiErrorMapping> = new Map<Status, OpenAiErrorMapping>([
  [Status.INVALID_ARGUMENT, { status: 400, code: 'invalid_value' }],
  [Status.UNAUTHENTICATED, { status: 401, code: 'invalid_session_token' }],
  [Status.PERMISSION_DENIED, { status: 403, code: 'session_token_mismatch' }],
  [Status.NOT_FOUND, { status: 404, code: 'model_not_found' }],
  [Status.RESOURCE_EXHAUSTED, { status: 429, code: 'agent_busy' }],
  [Status.UNAVAILABLE, { status: 503, code: 'agent_unavailable' }],
  [Status.DEADLINE_EXCEEDED, { status: 504, code: 'engine_timeout' }],
]);

/** Seconds a client is told to wait (`Retry-After`) when the agent's queue is full. */
export const BUSY_RETRY_AFTER_SECONDS = 1;

/** An error as the HTTP routes answer it: status, OpenAI's error body and extra headers. */
export interface OpenAiErrorAnswer {
  status: number;
  body: OpenAiErrorBody;
  headers: Record<string, string>;
}

/** A request field as OpenAI names params: the generation options are top-level fields there (`options.top_p` → `top_p`). */
const paramOf = (field: string) => field.replace(/^options\./, '');

/**
 * How the HTTP routes answer `err`: an {@link OpenAiRequestError} is 400 with its param and
 * code; an agent error through {@link OPENAI_ERROR_BY_GRPC_STATUS} (the refused field as
 * `param`, `Retry-After` on 429); a job cut by the agent's shutdown is 503; anything else is
 * logged with a reference id and answered 500 without internals.
 */
export function openAiErrorAnswer(err: unknown, logger: Logger): OpenAiErrorAnswer {
  if (err instanceof OpenAiRequestError) return { status: 400, body: openAiError(400, err.message, { param: err.param, code: err.code }), headers: {} };
  const mapped = isGrpcMappedError(err) ? OPENAI_ERROR_BY_GRPC_STATUS.get(err.grpcStatus) : undefined;
  if (mapped && isGrpcMappedError(err)) {
    let param: string | null = null;
    let code = mapped.code;
    if (err instanceof RequestValidationError) {
      param = paramOf(err.field);
      code = err.code;
    } else if (err instanceof TokenError && typeof err.context.field === 'string') param = paramOf(err.context.field);
    else if (mapped.status === 404) param = 'model';
    const headers: Record<string, string> = mapped.status === 429 ? { 'retry-after': String(BUSY_RETRY_AFTER_SECONDS) } : {};
    return { status: mapped.status, body: openAiError(mapped.status, err.message, { param, code }), headers };
  }
  if (isAbortError(err)) {
    return { status: 503, body: openAiError(503, 'the job was cancelled (the agent is shutting down)', { code: 'cancelled' }), headers: {} };
  }
  const reference = randomUUID().slice(0, 8);
  logger.error({ err, reference }, 'http request failed');
  return { status: 500, body: openAiError(500, `internal error (reference ${reference}); see the agent log`, { code: 'internal_error' }), headers: {} };
}

import type { FastifyReply } from 'fastify';
import { Status } from 'nice-grpc-common';
import { OpenAiRequestError, openAiError } from '@titancompute/protocol';
import { isGrpcMappedError, type Logger } from '@titancompute/server-kit';
import { InvalidRequestError } from '../errors.js';

/** One OpenAI-shaped answer for a gRPC status an error declares: HTTP status and OpenAI's `code`. */
interface OpenAiErrorMapping {
  readonly status: number;
  readonly code: string;
}

/**
 * The one table from the gRPC status an error declares to the OpenAI-compatible answer, as
 * OpenAI uses its statuses: 400, 401, 403, 404, 429, 503. Unlisted statuses and undeclared
 * errors are 500 `internal_error` with no detail (logged only).
 */
export const OPENAI_ERROR_BY_GRPC_STATUS: ReadonlyMap<Status, OpenAiErrorMapping> = new Map<Status, OpenAiErrorMapping>([
  [Status.INVALID_ARGUMENT, { status: 400, code: 'invalid_value' }],
  [Status.UNAUTHENTICATED, { status: 401, code: 'invalid_api_key' }],
  [Status.PERMISSION_DENIED, { status: 403, code: 'model_not_allowed' }],
  [Status.NOT_FOUND, { status: 404, code: 'not_found' }],
  [Status.ALREADY_EXISTS, { status: 409, code: 'already_exists' }],
  [Status.RESOURCE_EXHAUSTED, { status: 429, code: 'agents_busy' }],
  [Status.UNAVAILABLE, { status: 503, code: 'no_agents' }],
]);

/** A quota error's `quota` field, when the error has one (API-key quotas). */
function quotaOf(err: unknown): string | undefined {
  const quota = (err as { quota?: unknown }).quota;
  return typeof quota === 'string' ? quota : undefined;
}

/**
 * Answers `err` in OpenAI's error shape `{"error": {"message", "type", "param", "code"}}`:
 * an {@link OpenAiRequestError} is 400 with its param and code; an error declaring a gRPC status
 * goes through {@link OPENAI_ERROR_BY_GRPC_STATUS} with its trailers as headers (`retry-after-ms`
 * also as `Retry-After` in whole seconds, `x-ratelimit-*` as they are); anything else is logged
 * and answered 500 without internals.
 */
export function sendOpenAiError(reply: FastifyReply, err: unknown, logger: Logger): FastifyReply {
  if (err instanceof OpenAiRequestError) return reply.code(400).send(openAiError(400, err.message, { param: err.param, code: err.code }));
  const mapped = isGrpcMappedError(err) ? OPENAI_ERROR_BY_GRPC_STATUS.get(err.grpcStatus) : undefined;
  if (!mapped || !isGrpcMappedError(err)) {
    logger.error({ err }, 'openai request failed');
    return reply.code(500).send(openAiError(500, 'the server failed to handle the request', { code: 'internal_error' }));
  }
  for (const [name, value] of Object.entries(err.grpcTrailers ?? {})) {
    if (name === 'retry-after-ms') reply.header('Retry-After', String(Math.max(1, Math.ceil(Number(value) / 1000))));
    reply.header(name, value);
  }
  const quota = quotaOf(err);
  let code = mapped.code;
  let type: string | undefined;
  if (quota === 'budget') {
    code = 'insufficient_quota';
    type = 'insufficient_quota';
  } else if (quota !== undefined) code = 'rate_limit_exceeded';
  const param = err instanceof InvalidRequestError ? err.field : null;
  return reply.code(mapped.status).send(openAiError(mapped.status, err.message, { param, code, ...(type ? { type } : {}) }));
}

import type { FastifyReply } from 'fastify';
import { Status } from 'nice-grpc-common';
import { isGrpcMappedError, type GrpcMappedError, type Logger } from '@titancompute/server-kit';

/**
 * v1 error codes plus `invalid_argument`, `agents_busy`, `not_found` and `method_not_allowed`,
 * and those of API keys: `unauthorized` (no or wrong admin token), `missing_api_key`,
 * `invalid_api_key`, `forbidden`, `model_not_allowed`, `rate_limited`, `budget_exhausted`, `already_exists`.
 */
export type HttpErrorCode =
  | 'invalid_json'
  | 'missing_client_id'
  | 'missing_model'
  | 'missing_prompt'
  | 'invalid_argument'
  | 'no_agents'
  | 'agents_busy'
  | 'token_generation_failed'
  | 'not_found'
  | 'method_not_allowed'
  | 'unauthorized'
  | 'missing_api_key'
  | 'invalid_api_key'
  | 'forbidden'
  | 'model_not_allowed'
  | 'rate_limited'
  | 'budget_exhausted'
  | 'already_exists';

/** One REST answer: HTTP status and the `error` code of the body. */
export interface HttpErrorMapping {
  readonly status: number;
  readonly error: HttpErrorCode;
}

/**
 * The one table from the gRPC status an error declares (`grpcStatus`, the same status gRPC
 * callers see) to the REST answer, with v1's error code where v1 had one. An error may name a
 * more specific code of the same status (`restErrorCode`, e.g. `invalid_api_key`,
 * `rate_limited`). A status not listed here, or an error that declares none, is {@link INTERNAL_HTTP_ERROR}.
 */
export const HTTP_ERROR_BY_GRPC_STATUS: ReadonlyMap<Status, HttpErrorMapping> = new Map<Status, HttpErrorMapping>([
  [Status.INVALID_ARGUMENT, { status: 400, error: 'invalid_argument' }],
  [Status.UNAVAILABLE, { status: 503, error: 'no_agents' }],
  [Status.RESOURCE_EXHAUSTED, { status: 429, error: 'agents_busy' }],
  [Status.UNAUTHENTICATED, { status: 401, error: 'unauthorized' }],
  [Status.PERMISSION_DENIED, { status: 403, error: 'forbidden' }],
  [Status.NOT_FOUND, { status: 404, error: 'not_found' }],
  [Status.ALREADY_EXISTS, { status: 409, error: 'already_exists' }],
]);

/** The REST codes an error may name itself (`restErrorCode`) instead of its status's. */
const SPECIFIC_CODES: ReadonlySet<string> = new Set<HttpErrorCode>([
  'missing_api_key',
  'invalid_api_key',
  'model_not_allowed',
  'rate_limited',
  'budget_exhausted',
]);

/** What any other error of the inference route answers; its details go to the log only. */
export const INTERNAL_HTTP_ERROR = {
  status: 500,
  error: 'token_generation_failed',
  message: 'could not generate a session token',
} as const satisfies HttpErrorMapping & { message: string };

/** Sends `{error, code, message}` with HTTP status `status` (v1's error body). */
export function sendError(reply: FastifyReply, status: number, error: HttpErrorCode, message: string): FastifyReply {
  return reply.code(status).send({ error, code: status, message });
}

/**
 * Answers an error thrown by the inference route through {@link HTTP_ERROR_BY_GRPC_STATUS}: the
 * error's message, its `restErrorCode` when it names one, and its gRPC trailers as headers of
 * the same name (`retry-after-ms` also as `Retry-After` in whole seconds, at least 1). Anything
 * else is logged and answered with {@link INTERNAL_HTTP_ERROR}.
 */
export function sendMappedError(reply: FastifyReply, err: unknown, logger: Logger): FastifyReply {
  const mapped = isGrpcMappedError(err) ? HTTP_ERROR_BY_GRPC_STATUS.get(err.grpcStatus) : undefined;
  if (mapped === undefined) {
    logger.error({ err }, 'token generation failed');
    return sendError(reply, INTERNAL_HTTP_ERROR.status, INTERNAL_HTTP_ERROR.error, INTERNAL_HTTP_ERROR.message);
  }
  const { message, grpcTrailers, restErrorCode } = err as GrpcMappedError & { restErrorCode?: unknown };
  const code = typeof restErrorCode === 'string' && SPECIFIC_CODES.has(restErrorCode) ? (restErrorCode as HttpErrorCode) : mapped.error;
  for (const [name, value] of Object.entries(grpcTrailers ?? {})) {
    if (name === 'retry-after-ms') reply.header('Retry-After', String(Math.max(1, Math.ceil(Number(value) / 1000))));
    reply.header(name, value);
  }
  return sendError(reply, mapped.status, code, message);
}

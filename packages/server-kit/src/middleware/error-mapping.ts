import { randomUUID } from 'node:crypto';
import { isAbortError } from 'abort-controller-x';
import { ServerError, Status, type CallContext, type ServerMiddleware } from 'nice-grpc-common';
import type { Logger } from 'pino';

/**
 * An error a package may throw from deep inside a handler that already knows its gRPC status
 * (each package's base error declares it): the error-mapping middleware turns it into a
 * `ServerError` with its message, and sets its `grpcTrailers` (if any) on the call's trailer.
 */
export interface GrpcMappedError extends Error {
  /** The status callers see. */
  readonly grpcStatus: Status;
  /** Trailing metadata sent with the status, e.g. `{ 'retry-after-ms': '250' }`. Default: none. */
  readonly grpcTrailers?: Readonly<Record<string, string>> | undefined;
}

/**
 * Whether `err` declares the gRPC status callers see (a numeric `grpcStatus`). REST layers use
 * it to map the same declared status to HTTP.
 */
export function isGrpcMappedError(err: unknown): err is GrpcMappedError {
  return err instanceof Error && typeof (err as Partial<GrpcMappedError>).grpcStatus === 'number';
}

/**
 * The error a caller gets for `err`, thrown by a handler (or a check before it) of the call to
 * `path`: a `ServerError` or an abort as it is; an error with a `grpcStatus` keeps its message
 * and sets its `grpcTrailers` on `context.trailer`; any error of a call the client already
 * cancelled becomes CANCELLED; everything else becomes INTERNAL with a reference id, and the
 * details go to the log only, never to the caller.
 */
export function mapHandlerError(err: unknown, path: string, context: Pick<CallContext, 'signal' | 'trailer'>, logger: Logger): unknown {
  if (err instanceof ServerError || isAbortError(err)) return err;
  if (isGrpcMappedError(err)) {
    if (err.grpcTrailers) for (const key in err.grpcTrailers) context.trailer.set(key, err.grpcTrailers[key]!);
    return new ServerError(err.grpcStatus, err.message);
  }
  if (context.signal.aborted) return new ServerError(Status.CANCELLED, 'the call was cancelled by the client');
  const reference = randomUUID().slice(0, 8);
  logger.error({ err, method: path, reference }, 'unhandled error in handler');
  return new ServerError(Status.INTERNAL, `internal error (reference ${reference}); see the server log`);
}

/**
 * Maps anything a handler throws that is not a `ServerError` (or an abort) to a status (see
 * {@link mapHandlerError}).
 */
export function createErrorMappingMiddleware(logger: Logger): ServerMiddleware {
  return async function* errorMappingMiddleware(call, context) {
    try {
      return yield* call.next(call.request, context);
    } catch (err) {
      throw mapHandlerError(err, call.method.path, context, logger);
    }
  };
}

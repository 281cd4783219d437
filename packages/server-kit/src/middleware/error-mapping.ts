import { randomUUID } from 'node:crypto';
import { isAbortError } from 'abort-controller-x';
import { ServerError, Status, type ServerMiddleware } from 'nice-grpc-common';
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
 * Maps anything a handler throws that is not a `ServerError` (or an abort) to a status:
 * errors with a `grpcStatus` keep their message and send their `grpcTrailers`; any error of a call the client already
 * cancelled becomes CANCELLED; everything else becomes INTERNAL with a reference id, and the
 * details go to the log only, never to the caller.
 */
export function createErrorMappingMiddleware(logger: Logger): ServerMiddleware {
  return async function* errorMappingMiddleware(call, context) {
    try {
      return yield* call.next(call.request, context);
    } catch (err) {
      if (err instanceof ServerError || isAbortError(err)) throw err;
      if (isGrpcMappedError(err)) {
        for (const [key, value] of Object.entries(err.grpcTrailers ?? {})) context.trailer.set(key, value);
        throw new ServerError(err.grpcStatus, err.message);
      }
      if (context.signal.aborted) throw new ServerError(Status.CANCELLED, 'the call was cancelled by the client');
      const reference = randomUUID().slice(0, 8);
      logger.error({ err, method: call.method.path, reference }, 'unhandled error in handler');
      throw new ServerError(Status.INTERNAL, `internal error (reference ${reference}); see the server log`);
    }
  };
}

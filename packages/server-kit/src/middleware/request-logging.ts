import { ServerError, Status, type ServerMiddleware } from 'nice-grpc-common';
import { isAbortError } from 'abort-controller-x';
import type { Logger } from 'pino';

/** Statuses that mean the server failed (logged at `error`); every other failure is the caller's. */
const SERVER_FAULTS: ReadonlySet<Status> = new Set([Status.INTERNAL, Status.UNKNOWN, Status.DATA_LOSS]);
/** Statuses that only mean the caller went away or ran out of time (logged at `debug`). */
const CALLER_GONE: ReadonlySet<Status> = new Set([Status.CANCELLED, Status.DEADLINE_EXCEEDED]);

/** The log level of a finished call with this status. */
export function logLevelOf(code: Status): 'debug' | 'info' | 'error' {
  if (code === Status.OK || CALLER_GONE.has(code)) return 'debug';
  return SERVER_FAULTS.has(code) ? 'error' : 'info';
}

/**
 * Logs every call (method, status name, duration in ms) once it ends: OK, CANCELLED and
 * DEADLINE_EXCEEDED at `debug`; the caller's errors (INVALID_ARGUMENT, NOT_FOUND,
 * UNAUTHENTICATED, RESOURCE_EXHAUSTED, …) at `info`; server faults (INTERNAL, UNKNOWN,
 * DATA_LOSS) at `error`. It runs outside the error mapping, so it logs the status the caller
 * receives. Health checks are not logged.
 */
export function createRequestLoggingMiddleware(logger: Logger): ServerMiddleware {
  return async function* requestLoggingMiddleware(call, context) {
    if (call.method.path.startsWith('/grpc.health.v1.')) return yield* call.next(call.request, context);
    const started = performance.now();
    let code: Status = Status.OK;
    let details: string | undefined;
    try {
      return yield* call.next(call.request, context);
    } catch (err) {
      code = err instanceof ServerError ? err.code : isAbortError(err) ? Status.CANCELLED : Status.UNKNOWN;
      if (err instanceof ServerError) details = err.details;
      throw err;
    } finally {
      // A stream the client cancelled ends without an error on this side.
      if (code === Status.OK && context.signal.aborted) code = Status.CANCELLED;
      const entry = {
        method: call.method.path,
        code: Status[code],
        ms: Math.round((performance.now() - started) * 100) / 100,
        ...(details !== undefined ? { details } : {}),
      };
      logger[logLevelOf(code)](entry, code === Status.OK ? 'call' : 'call failed');
    }
  };
}

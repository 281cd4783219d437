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

/** What a finished call's log line says about how it ended. */
export interface CallEnd {
  code: Status;
  /** The status details sent to the caller, for a failed call. */
  details?: string | undefined;
}

/** How a call that threw `err` ended for its caller (a `ServerError`'s status, CANCELLED for an abort, else UNKNOWN). */
export function callEndOf(err: unknown): CallEnd {
  if (err instanceof ServerError) return { code: err.code, details: err.details };
  return { code: isAbortError(err) ? Status.CANCELLED : Status.UNKNOWN };
}

/** Health checks are not logged. */
export function isLoggedPath(path: string): boolean {
  return !path.startsWith('/grpc.health.v1.');
}

/**
 * Writes the log line of a finished call (method, status name, duration in ms, details) at the
 * level {@link logLevelOf} its status; nothing is built when that level is off (OK calls log at
 * `debug`). `aborted`: the client cancelled (a stream that ends without an error is CANCELLED).
 */
export function logCall(logger: Logger, path: string, end: CallEnd, startedMs: number, aborted: boolean): void {
  // A stream the client cancelled ends without an error on this side.
  const code = end.code === Status.OK && aborted ? Status.CANCELLED : end.code;
  const level = logLevelOf(code);
  if (!logger.isLevelEnabled(level)) return;
  const entry = {
    method: path,
    code: Status[code],
    ms: Math.round((performance.now() - startedMs) * 100) / 100,
    ...(end.details !== undefined ? { details: end.details } : {}),
  };
  logger[level](entry, code === Status.OK ? 'call' : 'call failed');
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
    if (!isLoggedPath(call.method.path)) return yield* call.next(call.request, context);
    const started = performance.now();
    let end: CallEnd = { code: Status.OK };
    try {
      return yield* call.next(call.request, context);
    } catch (err) {
      end = callEndOf(err);
      throw err;
    } finally {
      logCall(logger, call.method.path, end, started, context.signal.aborted);
    }
  };
}

import { ServerError, Status, type ServerMiddleware } from 'nice-grpc-common';
import { isAbortError } from 'abort-controller-x';
import type { Logger } from 'pino';

/**
 * Logs every call at `debug` (method, status, duration in ms); failures other than
 * client-side statuses are logged at `warn`. Health checks are not logged.
 */
export function createRequestLoggingMiddleware(logger: Logger): ServerMiddleware {
  return async function* requestLoggingMiddleware(call, context) {
    if (call.method.path.startsWith('/grpc.health.v1.')) return yield* call.next(call.request, context);
    const started = performance.now();
    let code: Status = Status.OK;
    try {
      return yield* call.next(call.request, context);
    } catch (err) {
      code = err instanceof ServerError ? err.code : isAbortError(err) ? Status.CANCELLED : Status.UNKNOWN;
      throw err;
    } finally {
      const entry = { method: call.method.path, code: Status[code], ms: Math.round((performance.now() - started) * 100) / 100 };
      if (code === Status.INTERNAL || code === Status.UNKNOWN) logger.warn(entry, 'call failed');
      else logger.debug(entry, 'call');
    }
  };
}

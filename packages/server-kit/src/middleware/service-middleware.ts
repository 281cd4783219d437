import type { ProtoVersionCheck } from '@titancompute/protocol';
import { Status, type ServerMiddleware } from 'nice-grpc-common';
import type { Logger } from 'pino';
import type { DrainController } from './drain.js';
import { mapHandlerError } from './error-mapping.js';
import type { RequestDecodingGuard } from './request-decoding.js';
import { callEndOf, isLoggedPath, logCall, type CallEnd } from './request-logging.js';

/** What {@link createServiceMiddleware} runs around every call. */
export interface ServiceMiddlewareParts {
  drain: DrainController;
  logger: Logger;
  protoVersion: ProtoVersionCheck;
  decoding: RequestDecodingGuard;
}

/**
 * The one middleware of every TitanCompute gRPC server: drain (UNAVAILABLE once shutting down,
 * not logged) → request logging (the status the caller really got) → error mapping → proto_version
 * check → request decoding check → handler, in that order, as one async generator per call
 * instead of five nested ones (each `yield*` level costs every response message promise hops,
 * and every call the level's generator and closures). The parts are the same functions the
 * single-purpose middlewares (`createDrainController().middleware`, `createRequestLoggingMiddleware`,
 * `createErrorMappingMiddleware`, `createProtoVersionServerMiddleware`,
 * `createRequestDecodingGuard().middleware`) are made of.
 *
 * @example
 * ```ts
 * createServer().use(createServiceMiddleware({ drain, logger, protoVersion: createProtoVersionCheck(), decoding }));
 * ```
 */
export function createServiceMiddleware(parts: ServiceMiddlewareParts): ServerMiddleware {
  const { drain, logger, protoVersion, decoding } = parts;
  const ok: CallEnd = { code: Status.OK };
  return async function* serviceMiddleware(call, context) {
    const path = call.method.path;
    // Refused while draining before anything else (as the drain middleware, outermost, did).
    const counted = drain.enter(path);
    const logged = isLoggedPath(path);
    const started = logged ? performance.now() : 0;
    let end = ok;
    try {
      try {
        protoVersion(path, context);
        return yield* call.next(decoding.checked(call.method.requestStream, call.request), context);
      } catch (err) {
        throw mapHandlerError(err, path, context, logger);
      }
    } catch (err) {
      end = callEndOf(err);
      throw err;
    } finally {
      if (logged) logCall(logger, path, end, started, context.signal.aborted);
      if (counted) drain.leave();
    }
  };
}

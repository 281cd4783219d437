import { ServerError, Status, type ServerMiddleware } from 'nice-grpc-common';

/** Tracks in-flight calls and refuses new ones once draining starts. */
export interface DrainController {
  readonly middleware: ServerMiddleware;
  /** Calls in flight (health checks and reflection excluded). */
  readonly inFlight: number;
  /** From now on new calls get UNAVAILABLE. */
  startDraining(): void;
  /** Resolves when no call is in flight, or with false after `timeoutMs`. */
  waitIdle(timeoutMs: number): Promise<boolean>;
}

/**
 * Graceful drain: while a server shuts down its listener stays open so health checks can
 * report NOT_SERVING, new calls are refused with UNAVAILABLE ("shutting down", so clients
 * retry elsewhere) and calls in flight finish.
 */
export function createDrainController(isExempt: (path: string) => boolean): DrainController {
  let inFlight = 0;
  let draining = false;
  const idleWaiters = new Set<() => void>();
  const notifyIdle = () => {
    if (inFlight === 0) for (const w of idleWaiters) w();
  };
  return {
    get inFlight() {
      return inFlight;
    },
    startDraining() {
      draining = true;
    },
    waitIdle(timeoutMs) {
      if (inFlight === 0) return Promise.resolve(true);
      return new Promise<boolean>((resolve) => {
        const done = (idle: boolean) => {
          clearTimeout(timer);
          idleWaiters.delete(onIdle);
          resolve(idle);
        };
        const onIdle = () => done(true);
        const timer = setTimeout(() => done(false), timeoutMs);
        idleWaiters.add(onIdle);
      });
    },
    middleware: async function* drainMiddleware(call, context) {
      if (isExempt(call.method.path)) return yield* call.next(call.request, context);
      if (draining) throw new ServerError(Status.UNAVAILABLE, 'server is shutting down; retry on another instance');
      inFlight += 1;
      try {
        return yield* call.next(call.request, context);
      } finally {
        inFlight -= 1;
        notifyIdle();
      }
    },
  };
}

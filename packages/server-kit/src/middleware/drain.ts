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
  /**
   * A call starts (what {@link DrainController.middleware} does first): throws UNAVAILABLE while
   * draining; returns whether the call is counted in flight (exempt paths are not). A counted
   * call must {@link DrainController.leave} once it ends.
   */
  enter(path: string): boolean;
  /** A counted call ended. */
  leave(): void;
}

/**
 * The calls a draining server still answers, and does not count as in flight: grpc.health.v1
 * (so load balancers and clients see NOT_SERVING rather than UNAVAILABLE) and server reflection.
 * Its own rule, not the proto_version exemption, though today both name the same services.
 */
export function isDrainExempt(path: string): boolean {
  return path.startsWith('/grpc.health.v1.') || path.startsWith('/grpc.reflection.');
}

/**
 * Graceful drain: while a server shuts down its listener stays open so health checks can
 * report NOT_SERVING, new calls are refused with UNAVAILABLE ("shutting down", so clients
 * retry elsewhere) and calls in flight finish. `isExempt` picks the method paths that are
 * always answered and never counted; default {@link isDrainExempt}.
 */
export function createDrainController(isExempt: (path: string) => boolean = isDrainExempt): DrainController {
  let inFlight = 0;
  let draining = false;
  const idleWaiters = new Set<() => void>();
  const notifyIdle = () => {
    if (inFlight === 0) for (const w of idleWaiters) w();
  };
  const enter = (path: string): boolean => {
    if (isExempt(path)) return false;
    if (draining) throw new ServerError(Status.UNAVAILABLE, 'server is shutting down; retry on another instance');
    inFlight += 1;
    return true;
  };
  const leave = () => {
    inFlight -= 1;
    notifyIdle();
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
    enter,
    leave,
    middleware: async function* drainMiddleware(call, context) {
      if (!enter(call.method.path)) return yield* call.next(call.request, context);
      try {
        return yield* call.next(call.request, context);
      } finally {
        leave();
      }
    },
  };
}

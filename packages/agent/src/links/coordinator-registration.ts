import type { CallOptions } from 'nice-grpc';
import type { AgentRegistration, CoordinatorServiceClient, DeepPartial } from '@titancompute/protocol';
import type { Logger } from '@titancompute/server-kit';
import { backoffDelay, delay } from '../util/abort.js';

/** Longest a single RegisterAgent call may take before it is retried. */
const REGISTER_CALL_TIMEOUT_MS = 10_000;

/** What {@link createRegistration} needs. */
export interface RegistrationOptions {
  client: CoordinatorServiceClient;
  /** The coordinator's `host:port`, for the logs. */
  address: string;
  /** This agent's credential, sent with every registration. */
  credential: string;
  /** The registration to send (built again for every attempt). */
  registration: () => DeepPartial<AgentRegistration>;
  /** Call options carrying the join token. */
  auth: () => CallOptions;
  /** Aborted when the link stops: retries end. */
  stopSignal: AbortSignal;
  /** First retry delay. */
  backoffInitialMs: number;
  /** Longest retry delay (it follows the health interval). */
  retryCapMs: () => number;
  /** Takes the coordinator's `heartbeat_interval_seconds` (0: unchanged); returns the interval now in force, ms. */
  applyInterval: (heartbeatIntervalSeconds: number) => number;
  /** Called after every successful registration. */
  onRegistered?: (() => void) | undefined;
  logger: Logger;
}

/** RegisterAgent, retried until it succeeds. */
export interface Registration {
  /** Registers, retrying with capped exponential backoff; rejects only when the link stops. */
  register(): Promise<void>;
  /** Resolves after the first successful registration. */
  readonly registered: Promise<void>;
}

/**
 * Creates the link's {@link Registration}: RegisterAgent with the join token and the agent's
 * credential, retried with capped exponential backoff (warned on the first and every tenth failure).
 */
export function createRegistration(options: RegistrationOptions): Registration {
  const { logger, stopSignal } = options;
  let resolveRegistered!: () => void;
  const registered = new Promise<void>((resolve) => {
    resolveRegistered = resolve;
  });

  async function register(): Promise<void> {
    for (let attempt = 0; ; attempt++) {
      stopSignal.throwIfAborted();
      try {
        const res = await options.client.registerAgent(
          { ...options.registration(), agentCredential: options.credential },
          { ...options.auth(), signal: AbortSignal.any([stopSignal, AbortSignal.timeout(REGISTER_CALL_TIMEOUT_MS)]) },
        );
        const intervalMs = options.applyInterval(res.heartbeatIntervalSeconds);
        logger.info({ coordinator: options.address, status: res.status, heartbeatIntervalMs: intervalMs }, 'registered with the coordinator');
        resolveRegistered();
        options.onRegistered?.();
        return;
      } catch (err) {
        if (stopSignal.aborted) throw err;
        const wait = backoffDelay(attempt, options.backoffInitialMs, options.retryCapMs());
        const level = attempt === 0 || attempt % 10 === 0 ? 'warn' : 'debug';
        logger[level]({ coordinator: options.address, err: (err as Error).message, retryInMs: wait }, 'cannot register with the coordinator; retrying');
        await delay(wait, stopSignal);
      }
    }
  }

  return { register, registered };
}

import type { CallOptions } from 'nice-grpc';
import type { AgentRegistration, CoordinatorServiceClient, DeepPartial } from '@titancompute/protocol';
import type { Logger } from '@titancompute/server-kit';

/** Longest a single RegisterAgent call may take before it is retried. */
export const REGISTER_CALL_TIMEOUT_MS = 10_000;

/** What {@link createRegistration} needs. */
export interface RegistrationOptions {
  /** This agent's credential, sent with every registration. */
  credential: string;
  /** The registration to send (built again for every attempt). */
  registration: () => DeepPartial<AgentRegistration>;
  /** Call options carrying the join token. */
  auth: () => CallOptions;
  /** Aborted when the link stops: a call in flight ends. */
  stopSignal: AbortSignal;
  /** Takes the coordinator's `heartbeat_interval_seconds` (0: unchanged); returns the interval now in force, ms. */
  applyInterval: (heartbeatIntervalSeconds: number) => number;
  /** Called after every successful registration. */
  onRegistered?: (() => void) | undefined;
  logger: Logger;
}

/** One coordinator to register with: its client and its `host:port` (for the logs). */
export interface RegistrationTarget {
  client: CoordinatorServiceClient;
  address: string;
}

/** RegisterAgent, one call at a time (the link retries, on this coordinator or the next one). */
export interface Registration {
  /**
   * One RegisterAgent call on `target`, given `timeoutMs` (default 10 s); rejects with its
   * failure (the caller decides whether to retry there or move on).
   */
  registerOn(target: RegistrationTarget, timeoutMs?: number): Promise<void>;
  /** Resolves after the first successful registration. */
  readonly registered: Promise<void>;
}

/**
 * Creates the link's {@link Registration}: RegisterAgent with the join token and the agent's
 * credential (the same credential on every coordinator: replicas sharing a store accept it).
 */
export function createRegistration(options: RegistrationOptions): Registration {
  const { logger, stopSignal } = options;
  let resolveRegistered!: () => void;
  const registered = new Promise<void>((resolve) => {
    resolveRegistered = resolve;
  });

  async function registerOn(target: RegistrationTarget, timeoutMs = REGISTER_CALL_TIMEOUT_MS): Promise<void> {
    stopSignal.throwIfAborted();
    const res = await target.client.registerAgent(
      { ...options.registration(), agentCredential: options.credential },
      { ...options.auth(), signal: AbortSignal.any([stopSignal, AbortSignal.timeout(timeoutMs)]) },
    );
    const intervalMs = options.applyInterval(res.heartbeatIntervalSeconds);
    logger.info({ coordinator: target.address, status: res.status, heartbeatIntervalMs: intervalMs }, 'registered with the coordinator');
    resolveRegistered();
    options.onRegistered?.();
  }

  return { registerOn, registered };
}

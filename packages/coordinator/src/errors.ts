import { Status } from 'nice-grpc-common';

/** Base class of every error the coordinator throws. */
export class CoordinatorError extends Error {
  override readonly name: string = 'CoordinatorError';
  /** Structured details for logs. */
  readonly context: Readonly<Record<string, unknown>>;
  override readonly cause: unknown;
  constructor(message: string, context: Readonly<Record<string, unknown>> = {}, options?: { cause?: unknown }) {
    super(message, options);
    this.context = context;
    this.cause = options?.cause;
  }
}

/** A request field is invalid: INVALID_ARGUMENT (gRPC) or 400 (REST); the message names the field. */
export class InvalidRequestError extends CoordinatorError {
  override readonly name = 'InvalidRequestError';
  readonly grpcStatus = Status.INVALID_ARGUMENT;
  /** The offending field, snake_case as on the wire (e.g. `max_tokens`). */
  readonly field: string;
  constructor(field: string, message: string) {
    super(`${field}: ${message}`, { field });
    this.field = field;
  }
}

/** No registered, reachable agent serves the model: UNAVAILABLE (gRPC) or 503 `no_agents` (REST). */
export class NoAgentAvailableError extends CoordinatorError {
  override readonly name = 'NoAgentAvailableError';
  readonly grpcStatus = Status.UNAVAILABLE;
  constructor(readonly model: string) {
    super(`no agent available for model "${model}"`, { model });
  }
}

/**
 * Every agent that serves the model is at capacity: RESOURCE_EXHAUSTED with trailer
 * `retry-after-ms` (gRPC) or 429 `agents_busy` with `Retry-After` (REST).
 */
export class AgentsBusyError extends CoordinatorError {
  override readonly name: string = 'AgentsBusyError';
  readonly grpcStatus = Status.RESOURCE_EXHAUSTED;
  constructor(
    readonly model: string,
    readonly retryAfterMs: number,
    /** A message other than "all agents … are busy" (subclasses), and extra context. */
    detail?: { message: string; context?: Readonly<Record<string, unknown>> },
  ) {
    super(detail?.message ?? `all agents serving model "${model}" are busy; retry after ${retryAfterMs} ms`, { model, retryAfterMs, ...detail?.context });
  }
}

/**
 * One `client_id` already holds its share of the fleet's slots (reservations plus started
 * jobs): RESOURCE_EXHAUSTED with trailer `retry-after-ms` (gRPC) or 429 `agents_busy` (REST).
 * The message names the limit.
 */
export class ClientShareExceededError extends AgentsBusyError {
  override readonly name = 'ClientShareExceededError';
  constructor(
    readonly clientId: string,
    model: string,
    readonly limit: { held: number; limit: number; share: number; fleetSlots: number },
    retryAfterMs: number,
  ) {
    super(model, retryAfterMs, {
      message:
        `client "${clientId}" already holds ${limit.held} of its limit of ${limit.limit} slot(s) ` +
        `(max client share ${limit.share} of ${limit.fleetSlots} fleet slots); retry after ${retryAfterMs} ms`,
      context: { clientId, ...limit },
    });
  }
}

/** A caller presented a missing or wrong join token: UNAUTHENTICATED. */
export class JoinTokenError extends CoordinatorError {
  override readonly name = 'JoinTokenError';
  readonly grpcStatus = Status.UNAUTHENTICATED;
  constructor(message: string) {
    super(message);
  }
}

/** The keyring could not be read, written or used. */
export class KeyringError extends CoordinatorError {
  override readonly name = 'KeyringError';
  readonly grpcStatus = Status.INTERNAL;
}

/** A session token could not be signed. REST maps it to 500 `token_generation_failed`. */
export class TokenSigningError extends CoordinatorError {
  override readonly name = 'TokenSigningError';
  readonly grpcStatus = Status.INTERNAL;
}

/** A session token failed verification (bad signature, claims, expiry). */
export class TokenVerificationError extends CoordinatorError {
  override readonly name = 'TokenVerificationError';
  readonly grpcStatus = Status.UNAUTHENTICATED;
}

/**
 * A caller tried to act for an agent id bound to another credential: PERMISSION_DENIED. The
 * message names the id and the fix (`titan-coordinator forget-agent ID`).
 */
export class AgentIdentityError extends CoordinatorError {
  override readonly name = 'AgentIdentityError';
  readonly grpcStatus = Status.PERMISSION_DENIED;
  constructor(
    readonly agentId: string,
    message: string,
  ) {
    super(message, { agentId });
  }
}

/** The identity store (`<data-dir>/coordinator.db`) could not be opened, read or written. */
export class IdentityStoreError extends CoordinatorError {
  override readonly name = 'IdentityStoreError';
  readonly grpcStatus = Status.INTERNAL;
}

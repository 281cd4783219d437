import { Status } from 'nice-grpc-common';

/**
 * Base class of every error the coordinator throws. Each subclass declares the gRPC status
 * callers see (`grpcStatus`) and any trailers sent with it (`grpcTrailers`): server-kit's
 * error-mapping middleware reads them for gRPC, and the REST API maps the same status to HTTP
 * (`src/http/http-errors.ts`). Without a declared status (this base class itself) the error is
 * internal: callers get INTERNAL (REST 500) with a reference id, the details go to the log.
 */
export class CoordinatorError extends Error {
  override readonly name: string = 'CoordinatorError';
  /** The gRPC status callers see; `undefined`: an internal error, never shown to callers. */
  readonly grpcStatus: Status | undefined = undefined;
  /** Trailing metadata sent with the status (e.g. `retry-after-ms`). Default: none. */
  readonly grpcTrailers: Readonly<Record<string, string>> | undefined = undefined;
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
  override readonly grpcStatus = Status.INVALID_ARGUMENT;
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
  override readonly grpcStatus = Status.UNAVAILABLE;
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
  override readonly grpcStatus = Status.RESOURCE_EXHAUSTED;
  /** `retry-after-ms`: {@link AgentsBusyError.retryAfterMs}. */
  override readonly grpcTrailers: Readonly<Record<string, string>>;
  constructor(
    readonly model: string,
    readonly retryAfterMs: number,
    /** A message other than "all agents … are busy" (subclasses), and extra context. */
    detail?: { message: string; context?: Readonly<Record<string, unknown>> },
  ) {
    super(detail?.message ?? `all agents serving model "${model}" are busy; retry after ${retryAfterMs} ms`, { model, retryAfterMs, ...detail?.context });
    this.grpcTrailers = { 'retry-after-ms': String(retryAfterMs) };
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
  override readonly grpcStatus = Status.UNAUTHENTICATED;
  constructor(message: string) {
    super(message);
  }
}

/** The keyring could not be read, written or used. */
export class KeyringError extends CoordinatorError {
  override readonly name = 'KeyringError';
  override readonly grpcStatus = Status.INTERNAL;
}

/** A session token could not be signed. REST maps it to 500 `token_generation_failed`. */
export class TokenSigningError extends CoordinatorError {
  override readonly name = 'TokenSigningError';
  override readonly grpcStatus = Status.INTERNAL;
}

/**
 * A caller tried to act for an agent id bound to another credential: PERMISSION_DENIED. The
 * message names the id and the fix (`titan-coordinator forget-agent ID`).
 */
export class AgentIdentityError extends CoordinatorError {
  override readonly name = 'AgentIdentityError';
  override readonly grpcStatus = Status.PERMISSION_DENIED;
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
  override readonly grpcStatus = Status.INTERNAL;
}

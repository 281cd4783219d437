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
  /**
   * The REST `error` code when it is more specific than the one of the status
   * (`src/http/http-errors.ts`), e.g. `invalid_api_key` or `budget_exhausted`. Default: the status's.
   */
  readonly restErrorCode: string | undefined = undefined;
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
    /**
     * A message other than "all agents … are busy" (subclasses), extra context, and extra trailers
     * (e.g. the API key's `x-ratelimit-*`, which OpenAI clients read on every 429).
     */
    detail?: { message?: string; context?: Readonly<Record<string, unknown>>; trailers?: Readonly<Record<string, string>> },
  ) {
    super(detail?.message ?? `all agents serving model "${model}" are busy; retry after ${retryAfterMs} ms`, { model, retryAfterMs, ...detail?.context });
    this.grpcTrailers = { ...detail?.trailers, 'retry-after-ms': String(retryAfterMs) };
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

/** Why an API key was refused ({@link ApiKeyAuthError}). */
export type ApiKeyRefusal = 'missing' | 'malformed' | 'unknown' | 'revoked' | 'expired';

/**
 * The request's API key is missing, malformed, unknown, revoked or expired (auth mode `keys`):
 * UNAUTHENTICATED (gRPC) or 401 `missing_api_key` / `invalid_api_key` (REST). The message names
 * the key (its name and prefix) when it is known.
 */
export class ApiKeyAuthError extends CoordinatorError {
  override readonly name = 'ApiKeyAuthError';
  override readonly grpcStatus = Status.UNAUTHENTICATED;
  /** The REST `error` code (`missing_api_key` when none was sent, else `invalid_api_key`). */
  override readonly restErrorCode: 'missing_api_key' | 'invalid_api_key';
  constructor(
    readonly reason: ApiKeyRefusal,
    message: string,
    /** The key's name, when the secret matched a (revoked or expired) key. */
    readonly keyName?: string,
  ) {
    super(message, { reason, ...(keyName !== undefined ? { keyName } : {}) });
    this.restErrorCode = reason === 'missing' ? 'missing_api_key' : 'invalid_api_key';
  }
}

/** The API key may not use the requested model: PERMISSION_DENIED (gRPC) or 403 `model_not_allowed` (REST). */
export class ModelNotAllowedError extends CoordinatorError {
  override readonly name = 'ModelNotAllowedError';
  override readonly grpcStatus = Status.PERMISSION_DENIED;
  /** The REST `error` code. */
  override readonly restErrorCode = 'model_not_allowed';
  constructor(
    readonly keyName: string,
    readonly model: string,
    readonly allowedModels: readonly string[],
  ) {
    super(`API key "${keyName}" may not use model "${model}" (allowed: ${allowedModels.join(', ')})`, { keyName, model, allowedModels });
  }
}

/** The limits of an API key a request can exceed: requests or tokens per minute, concurrent jobs, lifetime token budget. */
export type QuotaKind = 'rpm' | 'tpm' | 'concurrency' | 'budget';

/** REST/trailer name of each {@link QuotaKind} in messages. */
const QUOTA_LABELS: Record<QuotaKind, string> = {
  rpm: 'requests per minute',
  tpm: 'tokens per minute',
  concurrency: 'concurrent jobs',
  budget: 'token budget',
};

/**
 * An API key's quota is used up: RESOURCE_EXHAUSTED (gRPC) or 429 (REST): `rate_limited` for
 * `rpm`, `tpm` and `concurrency` (with trailer/header `retry-after-ms`, the true time until the
 * sliding window or a running job lets the next request through), `budget_exhausted` for
 * `budget` (no retry: the lifetime budget never refills). Trailers also carry `titan-quota` (the
 * {@link QuotaKind}) and the key's `x-ratelimit-*` values. The message names the key, the limit
 * and its value.
 */
export class QuotaExceededError extends CoordinatorError {
  override readonly name = 'QuotaExceededError';
  override readonly grpcStatus = Status.RESOURCE_EXHAUSTED;
  override readonly grpcTrailers: Readonly<Record<string, string>>;
  /** The REST `error` code. */
  override readonly restErrorCode: 'rate_limited' | 'budget_exhausted';
  constructor(
    readonly keyName: string,
    readonly quota: QuotaKind,
    /** The key's limit and what it has used (window or lifetime). */
    readonly usage: { limit: number; used: number },
    /** When to retry (ms); undefined for `budget`. */
    readonly retryAfterMs: number | undefined,
    /** The key's `x-ratelimit-*` values. */
    rateLimitHeaders: Readonly<Record<string, string>> = {},
  ) {
    const when = retryAfterMs === undefined ? 'it does not refill; ask for a new key' : `retry after ${retryAfterMs} ms`;
    super(`API key "${keyName}" exceeded its ${QUOTA_LABELS[quota]} limit of ${usage.limit} (used ${usage.used}); ${when}`, {
      keyName,
      quota,
      ...usage,
      retryAfterMs,
    });
    this.restErrorCode = quota === 'budget' ? 'budget_exhausted' : 'rate_limited';
    this.grpcTrailers = {
      'titan-quota': quota,
      ...(retryAfterMs !== undefined ? { 'retry-after-ms': String(retryAfterMs) } : {}),
      ...rateLimitHeaders,
    };
  }
}

/** An admin call without the admin credential (or with a wrong one): UNAUTHENTICATED (gRPC) or 401 `unauthorized` (REST). */
export class AdminAuthError extends CoordinatorError {
  override readonly name = 'AdminAuthError';
  override readonly grpcStatus = Status.UNAUTHENTICATED;
  constructor(message: string) {
    super(message);
  }
}

/** No API key has that id or name: NOT_FOUND (gRPC) or 404 `not_found` (REST). */
export class ApiKeyNotFoundError extends CoordinatorError {
  override readonly name = 'ApiKeyNotFoundError';
  override readonly grpcStatus = Status.NOT_FOUND;
  constructor(readonly key: string) {
    super(`no API key with id or name "${key}"`, { key });
  }
}

/** An active API key already has that name: ALREADY_EXISTS (gRPC) or 409 `already_exists` (REST). */
export class ApiKeyExistsError extends CoordinatorError {
  override readonly name = 'ApiKeyExistsError';
  override readonly grpcStatus = Status.ALREADY_EXISTS;
  constructor(readonly keyName: string) {
    super(`an active API key is already named "${keyName}"; revoke it first or pick another name`, { keyName });
  }
}

/** The API key store could not be opened, read or written (INTERNAL). */
export class ApiKeyStoreError extends CoordinatorError {
  override readonly name = 'ApiKeyStoreError';
  override readonly grpcStatus = Status.INTERNAL;
}

/** Which store a {@link SchemaVersionError} is about. */
export type SchemaStore = 'sqlite' | 'postgres';

/**
 * The coordinator's database was written by a newer coordinator (its schema version is higher
 * than the one this build knows): this coordinator refuses to start rather than misread it. The
 * message names both versions and says to upgrade the coordinator.
 */
export class SchemaVersionError extends CoordinatorError {
  override readonly name = 'SchemaVersionError';
  override readonly grpcStatus = Status.INTERNAL;
  constructor(
    /** The database: a file, or a PostgreSQL URL without its password. */
    readonly location: string,
    /** The schema (`coordinator` on PostgreSQL, a table group such as `api_keys` in SQLite). */
    readonly schema: string,
    /** The version found in the database. */
    readonly found: number,
    /** The newest version this coordinator knows. */
    readonly supported: number,
    store: SchemaStore,
  ) {
    super(
      `${location}: its ${schema} schema is version ${found}, newer than this coordinator's ${supported}: ` +
        `a newer coordinator migrated it; upgrade the coordinator (titan-coordinator) to one that knows schema version ${found}`,
      { location, schema, found, supported, store },
    );
  }
}

/**
 * The PostgreSQL store (`--store postgres`) could not be opened, migrated, read or written
 * (INTERNAL). `context.location` is the URL without its password.
 */
export class PostgresStoreError extends CoordinatorError {
  override readonly name = 'PostgresStoreError';
  override readonly grpcStatus = Status.INTERNAL;
}

/** Why a {@link KeyringSecretError} was raised. */
export type KeyringSecretProblem = 'missing' | 'malformed' | 'wrong';

/**
 * The keyring secret (`--keyring-secret`, `TITAN_KEYRING_SECRET`) that encrypts the signing keys
 * stored in PostgreSQL is missing, malformed (not 32 bytes in base64 or hex), or wrong (it does
 * not decrypt the stored keys: not the secret the keyring was created with). The message names
 * the variable; it never carries the secret.
 */
export class KeyringSecretError extends CoordinatorError {
  override readonly name = 'KeyringSecretError';
  override readonly grpcStatus = Status.INTERNAL;
  constructor(
    readonly problem: KeyringSecretProblem,
    message: string,
    context: Readonly<Record<string, unknown>> = {},
    options?: { cause?: unknown },
  ) {
    super(message, { problem, ...context }, options);
  }
}

/**
 * The shared fleet on PostgreSQL (`--store postgres`: agents, their load, reservations) could not
 * be read or written (INTERNAL). `context.operation` says what was attempted (`reserve`, `flush`,
 * `register`, …), `context.location` the URL without its password.
 */
export class FleetStoreError extends CoordinatorError {
  override readonly name = 'FleetStoreError';
  override readonly grpcStatus = Status.INTERNAL;
}

/** Failure to reach an agent before it answered (connection refused, reset, timed out): the request can go elsewhere. */
export class AgentUnreachableError extends CoordinatorError {
  override readonly name = 'AgentUnreachableError';
}

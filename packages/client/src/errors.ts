import { ClientError, Status, type Metadata } from 'nice-grpc-common';
import { isBrandedInstance, PROTO_VERSION, TlsConfigError } from '@titancompute/protocol';

/** Brand of the SDK's errors (`Symbol.for`, so the ESM and CommonJS builds share it). */
const TITAN_ERROR_BRAND = Symbol.for('titancompute.client.TitanError');

/** Extra facts an error carries (where it happened, what was known at the time). */
export type ErrorContext = Readonly<Record<string, unknown>>;

/** Options every {@link TitanError} constructor takes. */
export interface TitanErrorOptions {
  /** The error that caused this one (a gRPC `ClientError`, an abort reason …). */
  cause?: unknown;
  /** Extra facts: the call path, the agent id, the endpoint … */
  context?: ErrorContext;
}

/**
 * Base class of every error the SDK throws. `code` is the gRPC status the failure maps to
 * (`Status.OK` never appears), `cause` keeps the original error, `context` the facts known.
 * `instanceof` (on this class and every subclass) recognises errors thrown by either build of
 * the SDK, ESM or CommonJS, when a program ends up loading both.
 *
 * @example
 * ```ts
 * try { await client.complete({ model, prompt }); }
 * catch (err) { if (err instanceof TitanError) console.error(err.code, err.message); }
 * ```
 */
export class TitanError extends Error {
  override readonly name: string = 'TitanError';
  /** gRPC status code of the failure. */
  readonly code: Status;
  /** Extra facts about the failure. */
  readonly context: ErrorContext;
  override readonly cause: unknown;

  constructor(message: string, code: Status, options: TitanErrorOptions = {}) {
    super(message, { cause: options.cause });
    this.code = code;
    this.cause = options.cause;
    this.context = options.context ?? {};
  }

  /** The gRPC status name, e.g. `UNAVAILABLE`. */
  get codeName(): string {
    return Status[this.code] ?? String(this.code);
  }

  /** True for errors of this class (or a subclass) from either build (ESM, CommonJS) of the SDK. */
  static override [Symbol.hasInstance](value: unknown): boolean {
    // biome-ignore lint/complexity/noThisInStatic: `this` is the class instanceof asks about (a subclass too)
    return isBrandedInstance(this, value, TITAN_ERROR_BRAND);
  }
}
Object.defineProperty(TitanError.prototype, TITAN_ERROR_BRAND, { value: true });

/** No agent serves the model, or no agent is registered at all (gRPC UNAVAILABLE). */
export class NoAgentsError extends TitanError {
  override readonly name = 'NoAgentsError';
  constructor(
    message: string,
    /** The model that was asked for. */
    readonly model: string,
    options: TitanErrorOptions = {},
  ) {
    super(message, Status.UNAVAILABLE, options);
  }
}

/** Every suitable agent is busy (gRPC RESOURCE_EXHAUSTED). Retry after `retryAfterMs`. */
export class CapacityError extends TitanError {
  override readonly name: string = 'CapacityError';
  constructor(
    message: string,
    /** The server's hint (trailer `retry-after-ms`), or undefined when it gave none. */
    readonly retryAfterMs: number | undefined,
    options: TitanErrorOptions = {},
  ) {
    super(message, Status.RESOURCE_EXHAUSTED, options);
  }
}

/** The API-key limits a {@link QuotaExceededError} names. */
export type QuotaKind = 'rpm' | 'tpm' | 'concurrency' | 'budget';

/**
 * An API key's quota is used up (RESOURCE_EXHAUSTED with trailer `titan-quota`): `rpm`
 * (requests per minute), `tpm` (tokens per minute) or `concurrency` (jobs at once) are retried
 * after `retryAfterMs` like a busy answer; `budget` (the key's lifetime tokens) never refills,
 * so `retryAfterMs` is undefined and it is never retried.
 */
export class QuotaExceededError extends CapacityError {
  override readonly name: string = 'QuotaExceededError';
  constructor(
    message: string,
    /** Which limit. */
    readonly quota: QuotaKind,
    retryAfterMs: number | undefined,
    options: TitanErrorOptions = {},
  ) {
    super(message, retryAfterMs, options);
  }
}

/**
 * A credential was refused (UNAUTHENTICATED / PERMISSION_DENIED): a missing, unknown, revoked or
 * expired API key, a model the key may not use, a wrong admin token, or a bad, expired or
 * replayed session token at an agent. `context.target` says which server refused it.
 */
export class AuthError extends TitanError {
  override readonly name = 'AuthError';
}

/** Client and server were built from incompatible contracts (gRPC FAILED_PRECONDITION on `proto_version`). */
export class ProtocolVersionError extends TitanError {
  override readonly name = 'ProtocolVersionError';
  constructor(
    message: string,
    /** The version this SDK sent. */
    readonly clientVersion: string,
    /** The version the server speaks, when it said. */
    readonly serverVersion: string | undefined,
    options: TitanErrorOptions = {},
  ) {
    super(message, Status.FAILED_PRECONDITION, options);
  }
}

/**
 * The token stream broke after tokens were delivered. The SDK never restarts a generation
 * that has produced text (that would duplicate it): it tells how many tokens arrived.
 */
export class StreamInterruptedError extends TitanError {
  override readonly name = 'StreamInterruptedError';
  constructor(
    message: string,
    code: Status,
    /** Tokens delivered before the break. */
    readonly tokensReceived: number,
    /** The agent that was streaming. */
    readonly agentId: string,
    options: TitanErrorOptions = {},
  ) {
    super(message, code, options);
  }
}

/** A request field is invalid (gRPC INVALID_ARGUMENT); the message names the field. */
export class InvalidArgumentError extends TitanError {
  override readonly name = 'InvalidArgumentError';
  constructor(
    message: string,
    /** The offending field, when known. */
    readonly field: string | undefined,
    options: TitanErrorOptions = {},
  ) {
    super(message, Status.INVALID_ARGUMENT, options);
  }
}

/** A call ran past its deadline (gRPC DEADLINE_EXCEEDED). */
export class TimeoutError extends TitanError {
  override readonly name = 'TimeoutError';
  constructor(
    message: string,
    /** The deadline that expired, in milliseconds. */
    readonly timeoutMs: number | undefined,
    options: TitanErrorOptions = {},
  ) {
    super(message, Status.DEADLINE_EXCEEDED, options);
  }
}

/**
 * The caller aborted (its AbortSignal fired). Its `name` is `'AbortError'`, like the DOM's,
 * so code that checks `err.name === 'AbortError'` keeps working.
 */
export class TitanAbortError extends TitanError {
  override readonly name = 'AbortError';
  constructor(message = 'the request was aborted', options: TitanErrorOptions = {}) {
    super(message, Status.CANCELLED, options);
  }
}

/** A server could not be reached (connection refused, DNS, TLS handshake …; gRPC UNAVAILABLE). */
export class ConnectionError extends TitanError {
  override readonly name: string = 'ConnectionError';
  constructor(
    message: string,
    /** The `host:port` that could not be reached. */
    readonly address: string,
    options: TitanErrorOptions = {},
  ) {
    super(message, Status.UNAVAILABLE, options);
  }
}

/**
 * None of several coordinators answered (each unreachable, unavailable, or past its deadline
 * before connecting; gRPC UNAVAILABLE). A {@link ConnectionError} whose `address` lists them all;
 * `failures` says why each one failed, in the order they were tried.
 */
export class ClusterUnavailableError extends ConnectionError {
  override readonly name: string = 'ClusterUnavailableError';
  constructor(
    message: string,
    /** Every coordinator address of the client. */
    readonly addresses: readonly string[],
    /** Each address tried and its error, in order. */
    readonly failures: ReadonlyArray<{ readonly address: string; readonly error: TitanError }>,
    options: TitanErrorOptions = {},
  ) {
    super(message, addresses.join(','), options);
  }
}

/** A server is up but refuses work for now (e.g. an agent draining before shutdown; gRPC UNAVAILABLE). */
export class UnavailableError extends TitanError {
  override readonly name = 'UnavailableError';
  constructor(message: string, options: TitanErrorOptions = {}) {
    super(message, Status.UNAVAILABLE, options);
  }
}

/** The thing asked for does not exist (gRPC NOT_FOUND), e.g. an unknown instance id. */
export class NotFoundError extends TitanError {
  override readonly name = 'NotFoundError';
}

/** Any other failure of a request (the gRPC code says which). */
export class RequestFailedError extends TitanError {
  override readonly name = 'RequestFailedError';
}

/** Client configuration is invalid (e.g. unreadable TLS files). */
export class ClientConfigError extends TitanError {
  override readonly name = 'ClientConfigError';
  constructor(message: string, options: TitanErrorOptions = {}) {
    super(message, Status.INVALID_ARGUMENT, options);
  }
}

/** Which server a call went to, for error messages and mapping. */
export type CallTarget = 'coordinator' | 'agent' | 'instance-manager';

/** What {@link toTitanError} needs to know about a failed call. */
export interface MapErrorContext {
  target: CallTarget;
  /** `host:port` of the server. */
  address: string;
  /** The caller's own signal: when aborted, failures become {@link TitanAbortError}. */
  userSignal?: AbortSignal | undefined;
  /** The deadline signal of the call: when it fired, failures become {@link TimeoutError}. */
  timeoutSignal?: AbortSignal | undefined;
  timeoutMs?: number | undefined;
  /** Response header and trailer of the call, when any arrived. */
  header?: Metadata | undefined;
  trailer?: Metadata | undefined;
  /** Model asked for (for NoAgentsError). */
  model?: string | undefined;
  /** Extra context copied into the error. */
  extra?: ErrorContext;
}

const CONNECTION_FAILURE =
  /no connection established|ECONNREFUSED|ECONNRESET|ENOTFOUND|EAI_AGAIN|EHOSTUNREACH|failed to connect|connection dropped|name resolution|DNS resolution|handshake|getaddrinfo|Connection closed|socket/i;

function parseRetryAfter(trailer: Metadata | undefined, details: string): number | undefined {
  const raw = trailer?.get('retry-after-ms') ?? /retry[- ]after[^0-9]*(\d+)/i.exec(details)?.[1];
  if (raw === undefined) return undefined;
  const n = Number(raw);
  return Number.isFinite(n) && n >= 0 ? n : undefined;
}

const SOCKET_ERRORS: Readonly<Record<string, string>> = {
  ECONNREFUSED: 'connection refused (nothing listens there)',
  ENOTFOUND: 'host name not found',
  EAI_AGAIN: 'host name lookup failed',
  EHOSTUNREACH: 'host unreachable',
  ENETUNREACH: 'network unreachable',
  ETIMEDOUT: 'connection timed out',
  ECONNRESET: 'connection reset',
};

/**
 * A short reason for a failed connection, from grpc-js's details ("No connection established.
 * Last error: Error: connect ECONNREFUSED 127.0.0.1:1. Resolution note: ").
 */
function describeConnectionFailure(details: string): string {
  const code = /\b(E[A-Z_]{3,})\b/.exec(details)?.[1];
  if (code && SOCKET_ERRORS[code]) return `${SOCKET_ERRORS[code]}, ${code}`;
  const cleaned = details
    .replace(/\s*Resolution note:\s*$/i, '')
    .replace(/^No connection established\.\s*Last error:\s*/i, '')
    .replace(/^Error:\s*/, '')
    .trim();
  return cleaned || 'no connection';
}

function fieldFromMessage(details: string): string | undefined {
  return /^([a-z_][a-z0-9_.]*)\b/i.exec(details)?.[1] ?? /field[:\s]+["'`]?([a-z_][a-z0-9_.]*)/i.exec(details)?.[1];
}

/**
 * Turns anything a nice-grpc call can throw into a {@link TitanError}, so no raw gRPC error
 * leaks out of the SDK. Errors that already are TitanErrors pass through unchanged.
 */
export function toTitanError(error: unknown, ctx: MapErrorContext): TitanError {
  if (error instanceof TitanError) return error;
  const context: ErrorContext = { target: ctx.target, address: ctx.address, ...ctx.extra };
  if (ctx.userSignal?.aborted) {
    return new TitanAbortError(`${ctx.target} call to ${ctx.address} was aborted`, { cause: ctx.userSignal.reason ?? error, context });
  }
  if (ctx.timeoutSignal?.aborted) {
    return new TimeoutError(`${ctx.target} call to ${ctx.address} timed out after ${ctx.timeoutMs ?? '?'} ms`, ctx.timeoutMs, {
      cause: error,
      context,
    });
  }
  if (error instanceof TlsConfigError) {
    return new ClientConfigError(error.message, { cause: error, context });
  }
  if (!(error instanceof ClientError)) {
    if (error instanceof Error && error.name === 'AbortError') {
      return new TitanAbortError(`${ctx.target} call to ${ctx.address} was aborted`, { cause: error, context });
    }
    const message = error instanceof Error ? error.message : String(error);
    return new RequestFailedError(`${ctx.target} call to ${ctx.address} failed: ${message}`, Status.UNKNOWN, { cause: error, context });
  }
  const details = error.details;
  const where = `${ctx.target} ${ctx.address}`;
  switch (error.code) {
    case Status.INVALID_ARGUMENT:
      return new InvalidArgumentError(`invalid argument (${where}): ${details}`, fieldFromMessage(details), { cause: error, context });
    case Status.UNAUTHENTICATED:
    case Status.PERMISSION_DENIED: {
      return new AuthError(`${ctx.target} refused the credentials (${Status[error.code]}): ${details}`, error.code, {
        cause: error,
        context,
      });
    }
    case Status.FAILED_PRECONDITION:
      if (/proto_version/i.test(details)) {
        const serverVersion = ctx.header?.get('proto_version') ?? /server speaks (?:proto_version )?([0-9a-f]+)/i.exec(details)?.[1];
        return new ProtocolVersionError(
          `${where} speaks an incompatible protocol version (client ${PROTO_VERSION}, server ${serverVersion ?? 'unknown'}): ${details}`,
          PROTO_VERSION,
          serverVersion,
          { cause: error, context },
        );
      }
      return new RequestFailedError(`${where} refused the request: ${details}`, error.code, { cause: error, context });
    case Status.RESOURCE_EXHAUSTED: {
      const quota = ctx.trailer?.get('titan-quota');
      if (quota === 'rpm' || quota === 'tpm' || quota === 'concurrency' || quota === 'budget') {
        // An API key's own limit: the coordinator's message names the key, the limit and the wait.
        const retryAfterMs = quota === 'budget' ? undefined : parseRetryAfter(ctx.trailer, details);
        return new QuotaExceededError(`${details} (${where})`, quota, retryAfterMs, { cause: error, context: { ...context, quota } });
      }
      const retryAfterMs = parseRetryAfter(ctx.trailer, details);
      // The server's text usually says it already ("… are busy; retry after 500 ms"): say it once.
      const retryNote = retryAfterMs !== undefined && !/\bretry\b/i.test(details) ? ` (retry after ${retryAfterMs} ms)` : '';
      return new CapacityError(details ? `${details}${retryNote} (${where})` : `${where} is at capacity${retryNote}`, retryAfterMs, { cause: error, context });
    }
    case Status.UNAVAILABLE:
      if (CONNECTION_FAILURE.test(details)) {
        return new ConnectionError(`cannot reach ${ctx.target} at ${ctx.address}: ${describeConnectionFailure(details)}`, ctx.address, {
          cause: error,
          context,
        });
      }
      if (ctx.target === 'coordinator') {
        const noAgent = `no agent available${ctx.model ? ` for model "${ctx.model}"` : ''}`;
        // The coordinator's own text is usually exactly that sentence: say it once.
        const message = !details || details.startsWith(noAgent) ? `${details || noAgent} (${where})` : `${noAgent}: ${details}`;
        return new NoAgentsError(message, ctx.model ?? '', {
          cause: error,
          context,
        });
      }
      return new UnavailableError(`${where} is unavailable: ${details}`, { cause: error, context });
    case Status.DEADLINE_EXCEEDED:
      return new TimeoutError(`${where} deadline exceeded: ${details}`, ctx.timeoutMs, { cause: error, context });
    case Status.CANCELLED:
      return new TitanAbortError(`${where} cancelled the call: ${details}`, { cause: error, context });
    case Status.NOT_FOUND:
      return new NotFoundError(`not found (${where}): ${details}`, error.code, { cause: error, context });
    default:
      return new RequestFailedError(`${where} failed (${Status[error.code]}): ${details}`, error.code, { cause: error, context });
  }
}

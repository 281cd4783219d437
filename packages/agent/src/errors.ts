import { Status } from 'nice-grpc-common';

/** Base class of every error the agent throws. `grpcStatus`, when set, is the status callers see. */
export class AgentError extends Error {
  override readonly name: string = 'AgentError';
  readonly grpcStatus: Status;
  constructor(
    message: string,
    readonly context: Readonly<Record<string, unknown>> = {},
    options: { cause?: unknown; grpcStatus?: Status } = {},
  ) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.grpcStatus = options.grpcStatus ?? Status.INTERNAL;
  }
}

/** Why an engine failed: the short code also reported to the coordinator in JobOutcome.error. */
export type EngineErrorCode = 'engine_error' | 'deadline' | 'unavailable' | 'model_not_found' | 'invalid_parameters';

const ENGINE_STATUS: Record<EngineErrorCode, Status> = {
  engine_error: Status.INTERNAL,
  deadline: Status.DEADLINE_EXCEEDED,
  unavailable: Status.UNAVAILABLE,
  model_not_found: Status.NOT_FOUND,
  invalid_parameters: Status.INVALID_ARGUMENT,
};

/** An inference engine failed (upstream error, timeout, bad parameters, unknown model). */
export class EngineError extends AgentError {
  override readonly name = 'EngineError';
  constructor(
    message: string,
    readonly code: EngineErrorCode,
    context: Readonly<Record<string, unknown>> = {},
    options: { cause?: unknown } = {},
  ) {
    super(message, { ...context, code }, { ...options, grpcStatus: ENGINE_STATUS[code] });
  }
}

/** A session token was refused (UNAUTHENTICATED, PERMISSION_DENIED) or keys are unavailable (UNAVAILABLE). */
export class TokenError extends AgentError {
  override readonly name = 'TokenError';
  /**
   * The refused token's job id (its `job_id` claim, else its jti), set whenever the token's
   * signature was valid — so the coordinator's reservation for that job can be released at
   * once. Undefined when the token could not be authenticated (its claims are not trusted).
   * For a replayed token ("token already used") it names the job that already ran with it.
   */
  readonly jobId: string | undefined;
  constructor(
    message: string,
    grpcStatus: Status,
    context: Readonly<Record<string, unknown>> = {},
    options: { cause?: unknown; jobId?: string | undefined } = {},
  ) {
    super(message, options.jobId === undefined ? context : { ...context, jobId: options.jobId }, { cause: options.cause, grpcStatus });
    this.jobId = options.jobId;
  }

  /** This error again, naming the refused token's job (a no-op when it already names one). */
  withJobId(jobId: string): TokenError {
    if (this.jobId !== undefined) return this;
    const copy = new TokenError(this.message, this.grpcStatus, this.context, { cause: this.cause, jobId });
    copy.stack = this.stack;
    return copy;
  }
}

/** The agent's store of used token ids (its data dir) cannot be opened or written. */
export class ReplayStoreError extends AgentError {
  override readonly name = 'ReplayStoreError';
  constructor(message: string, context: Readonly<Record<string, unknown>> = {}, options: { cause?: unknown } = {}) {
    super(message, context, { ...options, grpcStatus: Status.UNAVAILABLE });
  }
}

/** No slot and no room in the queue (RESOURCE_EXHAUSTED), or the agent is draining (UNAVAILABLE). */
export class CapacityError extends AgentError {
  override readonly name = 'CapacityError';
  constructor(message: string, grpcStatus: Status, context: Readonly<Record<string, unknown>> = {}) {
    super(message, context, { grpcStatus });
  }
}

/** A request field is invalid (INVALID_ARGUMENT, naming the field). */
export class RequestValidationError extends AgentError {
  override readonly name = 'RequestValidationError';
  constructor(
    message: string,
    readonly field: string,
    /** A short code for the HTTP routes' OpenAI error body (`invalid_value`, `model_not_supported`). */
    readonly code: string = 'invalid_value',
  ) {
    super(message, { field }, { grpcStatus: Status.INVALID_ARGUMENT });
  }
}

/** nvidia-smi could not be run or its output could not be read. */
export class GpuStatsError extends AgentError {
  override readonly name = 'GpuStatsError';
  constructor(message: string, context: Readonly<Record<string, unknown>> = {}, options: { cause?: unknown } = {}) {
    super(message, context, options);
  }
}

/** Invalid options given to `startAgent` or an engine factory. */
export class AgentConfigError extends AgentError {
  override readonly name = 'AgentConfigError';
  constructor(message: string, context: Readonly<Record<string, unknown>> = {}, options: { cause?: unknown } = {}) {
    super(message, context, { ...options, grpcStatus: Status.INVALID_ARGUMENT });
  }
}

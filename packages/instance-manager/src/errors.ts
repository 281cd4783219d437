import { Status } from 'nice-grpc-common';

/** Base class of every error the instance manager throws. */
export class InstanceManagerError extends Error {
  override readonly name: string = 'InstanceManagerError';
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}

/** A request field is missing or malformed; reaches the caller as INVALID_ARGUMENT naming the field. */
export class ValidationError extends InstanceManagerError {
  override readonly name = 'ValidationError';
  readonly grpcStatus = Status.INVALID_ARGUMENT;
  constructor(
    message: string,
    readonly context: { readonly field: string },
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** The named instance or host is unknown, dead or stale; reaches the caller as NOT_FOUND. */
export class NotFoundError extends InstanceManagerError {
  override readonly name = 'NotFoundError';
  readonly grpcStatus = Status.NOT_FOUND;
  constructor(
    message: string,
    readonly context: { readonly kind: 'instance' | 'host'; readonly id: string },
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** A subscription asked to resume from a sequence whose events were pruned (or that is in the future). */
export class SequenceOutOfRangeError extends InstanceManagerError {
  override readonly name = 'SequenceOutOfRangeError';
  readonly grpcStatus = Status.OUT_OF_RANGE;
  constructor(
    message: string,
    readonly context: { readonly requested: number; readonly firstRetained: number; readonly latest: number },
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** A subscriber fell too far behind the live event stream; it should resume from `context.sequence`. */
export class SubscriberTooSlowError extends InstanceManagerError {
  override readonly name = 'SubscriberTooSlowError';
  readonly grpcStatus = Status.RESOURCE_EXHAUSTED;
  constructor(
    message: string,
    readonly context: { readonly sequence: number; readonly queued: number },
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** The storage backend failed (unreachable database, bad URL, migration failure). */
export class StorageError extends InstanceManagerError {
  override readonly name = 'StorageError';
  readonly grpcStatus = Status.UNAVAILABLE;
  constructor(
    message: string,
    readonly context: { readonly backend: 'memory' | 'sqlite' | 'postgres'; readonly operation: string },
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/**
 * The server is shutting down; streams end with UNAVAILABLE so clients reconnect elsewhere
 * (subscriptions say the sequence to resume from; health-check streams have none).
 */
export class ShuttingDownError extends InstanceManagerError {
  override readonly name = 'ShuttingDownError';
  readonly grpcStatus = Status.UNAVAILABLE;
  constructor(
    message: string,
    readonly context: { readonly sequence?: number },
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

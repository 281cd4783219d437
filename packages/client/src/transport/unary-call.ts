import type { Metadata } from 'nice-grpc-common';
import { toTitanError, type CallTarget, type ErrorContext } from '../errors.js';
import { createCallDeadline } from './deadline.js';

/** The call options a nice-grpc unary call gets: the deadline's signal and header/trailer hooks. */
export interface UnaryCallOptions {
  signal: AbortSignal;
  onHeader(header: Metadata): void;
  onTrailer(trailer: Metadata): void;
}

/** Where a unary call goes and how long it may take. */
export interface UnaryCallTarget {
  /** Which server (for error messages and mapping). */
  target: CallTarget;
  /** Its `host:port`. */
  address: string;
  /** Deadline of the call, ms. */
  timeoutMs: number;
  /** The caller's signal: its abort ends the call with a `TitanAbortError`. */
  signal?: AbortSignal | undefined;
  /** Model asked for (for `NoAgentsError`). */
  model?: string | undefined;
  /** Extra context copied into the error. */
  extra?: ErrorContext;
}

/**
 * Runs one unary gRPC call under a deadline (`timeoutMs`, or the caller's abort, whichever comes
 * first) and turns any failure into a `TitanError` with the call's header and trailer (so, e.g.,
 * a busy answer keeps its `retry-after-ms` hint). The one wrapper every unary call of the SDK uses.
 *
 * @example
 * ```ts
 * const status = await callUnary({ target: 'coordinator', address, timeoutMs: 10_000, signal }, (options) =>
 *   coordinator.querySystemStatus({ includeAgents: true }, options),
 * );
 * ```
 */
export async function callUnary<T>(where: UnaryCallTarget, call: (options: UnaryCallOptions) => Promise<T>): Promise<T> {
  const deadline = createCallDeadline(where.timeoutMs, where.signal);
  let header: Metadata | undefined;
  let trailer: Metadata | undefined;
  try {
    return await call({ signal: deadline.signal, onHeader: (h) => (header = h), onTrailer: (t) => (trailer = t) });
  } catch (error) {
    throw toTitanError(error, {
      target: where.target,
      address: where.address,
      userSignal: where.signal,
      timeoutSignal: deadline.timeoutSignal,
      timeoutMs: deadline.timeoutMs,
      header,
      trailer,
      ...(where.model !== undefined ? { model: where.model } : {}),
      ...(where.extra !== undefined ? { extra: where.extra } : {}),
    });
  } finally {
    deadline.dispose();
  }
}

/** A combined signal: the caller's signal or a deadline, whichever fires first. */
export interface CallDeadline {
  /** Pass this to the nice-grpc call. */
  readonly signal: AbortSignal;
  /** Fires when the deadline passes (not when the caller aborts). */
  readonly timeoutSignal: AbortSignal;
  readonly timeoutMs: number;
  /** Aborts the call (e.g. when the consumer stops iterating). */
  abort(): void;
  /** Stops the timer; call when the call ended. */
  dispose(): void;
}

/**
 * Makes the signal of one call: aborted by the caller's `signal`, by the deadline
 * (`timeoutMs`), or by {@link CallDeadline.abort}.
 */
export function createCallDeadline(timeoutMs: number, userSignal?: AbortSignal): CallDeadline {
  const controller = new AbortController();
  const timeoutController = new AbortController();
  const timer = setTimeout(() => {
    timeoutController.abort(new Error(`deadline of ${timeoutMs} ms exceeded`));
    controller.abort(timeoutController.signal.reason);
  }, timeoutMs);
  timer.unref?.();
  const onUserAbort = () => controller.abort(userSignal?.reason);
  if (userSignal?.aborted) controller.abort(userSignal.reason);
  else userSignal?.addEventListener('abort', onUserAbort, { once: true });
  return {
    signal: controller.signal,
    timeoutSignal: timeoutController.signal,
    timeoutMs,
    abort: () => controller.abort(new Error('call ended by the client')),
    dispose() {
      clearTimeout(timer);
      userSignal?.removeEventListener('abort', onUserAbort);
    },
  };
}

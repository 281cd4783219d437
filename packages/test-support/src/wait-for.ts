/** Options of {@link waitFor}. */
export interface WaitForOptions {
  /** Pause between two probes, in ms. Default 100. */
  intervalMs?: number;
  /**
   * Fail at once when the probe throws. Default false: a throwing probe counts as "not yet" (a
   * service still starting refuses connections), and the last error is quoted in the timeout error.
   */
  stopOnError?: boolean;
}

/** What {@link waitFor} resolves to. */
export interface WaitForResult<T> {
  /** The probe's first answer other than `undefined`, `null` or `false`. */
  value: T;
  /** Milliseconds from the first probe until that answer. */
  elapsedMs: number;
}

/**
 * Polls `probe` until it answers something other than `undefined`, `null` or `false` (`0` and `''`
 * are answers: an exit code 0 ends the wait), then returns that answer and the time it took. The one polling loop of the tests: wait on a condition, never on a fixed sleep.
 *
 * @param probe - Returns the awaited value, or `undefined`/`null`/`false` for "not yet". May be synchronous.
 * @param timeoutMs - How long to keep probing.
 * @param what - What is awaited, for the timeout error (e.g. `agent-1 to be evicted`); a function is
 *   called only on timeout, to describe the last state seen.
 * @param options - See {@link WaitForOptions}.
 * @throws Error `timed out after <timeoutMs> ms waiting for <what>[: <last error>]` when time runs
 *   out, or the probe's own error with `stopOnError`.
 */
export async function waitFor<T>(
  probe: () => T | undefined | null | false | Promise<T | undefined | null | false>,
  timeoutMs: number,
  what: string | (() => string),
  options: WaitForOptions = {},
): Promise<WaitForResult<T>> {
  const intervalMs = options.intervalMs ?? 100;
  const started = Date.now();
  let lastError: unknown;
  for (;;) {
    try {
      const value = await probe();
      if (value !== undefined && value !== null && value !== false) return { value, elapsedMs: Date.now() - started };
    } catch (err) {
      if (options.stopOnError) throw err;
      lastError = err;
    }
    if (Date.now() - started >= timeoutMs) break;
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${typeof what === 'function' ? what() : what}${lastError ? `: ${String(lastError)}` : ''}`);
}

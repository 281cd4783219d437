/**
 * Iterates `source` until it ends or one of `signals` aborts, whichever comes first: an abort
 * ends the iteration at once, even while the source is waiting for its next value (the source
 * is then told to return), and a value that arrives after the abort is not delivered.
 *
 * A plain async iterator, not an async generator: a health stream waits here for every
 * heartbeat, and each generator layer would keep its own request queue and promises alive
 * across the wait. Each value costs one promise and nothing outlives it: racing every `next()`
 * against one long-lived abort promise (`Promise.race`) would leave a reaction on that promise
 * per value, for as long as the stream lives (days).
 *
 * @example
 * ```ts
 * for await (const update of untilAborted(requests, [context.signal, shutdownSignal])) handle(update);
 * ```
 */
export function untilAborted<T>(source: AsyncIterable<T>, signals: readonly AbortSignal[]): AsyncIterable<T> {
  return {
    [Symbol.asyncIterator](): AsyncIterator<T> {
      const iterator = source[Symbol.asyncIterator]();
      const done: IteratorReturnResult<undefined> = { done: true, value: undefined };
      /** Ends the wait for the value being awaited now, if any. */
      let stopWaiting: (() => void) | undefined;
      let finished = false;
      const onAbort = () => stopWaiting?.();
      const aborted = () => signals.some((s) => s.aborted);
      const finish = () => {
        if (finished) return;
        finished = true;
        stopWaiting = undefined;
        for (const signal of signals) signal.removeEventListener('abort', onAbort);
        void iterator.return?.()?.catch(() => undefined);
      };
      for (const signal of signals) signal.addEventListener('abort', onAbort, { once: true });
      return {
        next() {
          if (finished || aborted()) {
            finish();
            return Promise.resolve(done);
          }
          return new Promise<IteratorResult<T>>((resolve, reject) => {
            stopWaiting = () => {
              finish();
              resolve(done);
            };
            iterator.next().then(
              (result) => {
                stopWaiting = undefined;
                if (result.done || aborted()) {
                  finish();
                  resolve(done);
                } else resolve(result);
              },
              (err: unknown) => {
                stopWaiting = undefined;
                finish();
                reject(err);
              },
            );
          });
        },
        return() {
          finish();
          return Promise.resolve(done);
        },
      };
    },
  };
}

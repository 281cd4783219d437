/**
 * An unbounded async channel: producers `push` values (and `end` or `fail` it), one consumer
 * iterates them with `for await`. Used to turn callback-style producers (engine callbacks,
 * health-update timers) into the async iterables that nice-grpc and engines use.
 */
export interface PushQueue<T> extends AsyncIterable<T> {
  push(value: T): void;
  /** Ends the iteration after the values already pushed. */
  end(): void;
  /** Makes the consumer throw `error` after the values already pushed. */
  fail(error: unknown): void;
  /** True once `end` or `fail` was called, or the consumer stopped iterating. */
  readonly closed: boolean;
}

/** Creates a {@link PushQueue}. `onReturn` runs when the consumer stops early (break/throw). */
export function createPushQueue<T>(onReturn?: () => void): PushQueue<T> {
  const items: T[] = [];
  let closed = false;
  let failure: { error: unknown } | undefined;
  let wake: (() => void) | undefined;
  const notify = () => {
    const w = wake;
    wake = undefined;
    w?.();
  };
  return {
    get closed() {
      return closed;
    },
    push(value) {
      if (closed) return;
      items.push(value);
      notify();
    },
    end() {
      closed = true;
      notify();
    },
    fail(error) {
      if (closed) return;
      failure = { error };
      closed = true;
      notify();
    },
    async *[Symbol.asyncIterator]() {
      try {
        for (;;) {
          if (items.length > 0) {
            yield items.shift() as T;
            continue;
          }
          if (failure) throw failure.error;
          if (closed) return;
          await new Promise<void>((resolve) => {
            wake = resolve;
          });
        }
      } finally {
        if (!closed) {
          closed = true;
          onReturn?.();
        }
      }
    },
  };
}

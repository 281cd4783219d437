/** A FIFO async mutex: one holder at a time, in call order. */
export interface Mutex {
  /** True while a holder runs (or waiters queue). */
  readonly locked: boolean;
  /** Runs `fn` exclusively and returns its result. */
  runExclusive<T>(fn: () => Promise<T> | T): Promise<T>;
}

/** Creates a {@link Mutex}. */
export function createMutex(): Mutex {
  let tail: Promise<void> = Promise.resolve();
  let pending = 0;
  return {
    get locked() {
      return pending > 0;
    },
    runExclusive<T>(fn: () => Promise<T> | T): Promise<T> {
      pending += 1;
      const run = tail.then(fn);
      tail = run.then(
        () => {
          pending -= 1;
        },
        () => {
          pending -= 1;
        },
      );
      return run;
    },
  };
}

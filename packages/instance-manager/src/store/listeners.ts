/** A set of argument-less listeners; errors thrown by one do not stop the others. */
export interface ListenerSet {
  add(listener: () => void): () => void;
  emit(): void;
}

/** Creates a {@link ListenerSet}. */
export function createListenerSet(): ListenerSet {
  const listeners = new Set<() => void>();
  return {
    add(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
    emit() {
      for (const l of [...listeners]) {
        try {
          l();
        } catch {
          // a listener's failure is its own business
        }
      }
    },
  };
}

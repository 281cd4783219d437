import type { instanceManager } from '@titancompute/protocol';
import { INSTANCE_MANAGER_DEFAULTS } from '../config.js';
import type { Store } from '../store/store.js';

/** Options of {@link createEventHub}. */
export interface EventHubOptions {
  /** Re-read the events table this often even without a notification. Default 1000 ms. */
  pollIntervalMs?: number;
  /** Events read per query. Default 1000. */
  batchSize?: number;
  onError?: (err: unknown) => void;
}

/**
 * One reader of the events table per server: woken by the store (local commits, PostgreSQL
 * NOTIFY) and by a slow poll, it reads new events in sequence order and hands each batch to
 * every subscriber, so N subscribers cost one query, not N.
 */
export interface EventHub {
  /** Sequence of the last event handed to subscribers. */
  readonly sequence: number;
  /** Registers a listener for every new batch, in order; returns its removal. */
  subscribe(listener: (events: instanceManager.InstanceEvent[]) => void): () => void;
  /** Reads new events now; resolves once they were handed out. */
  pump(): Promise<void>;
  close(): void;
}

/** Starts an {@link EventHub} positioned at the latest stored event. */
export async function createEventHub(store: Store, options: EventHubOptions = {}): Promise<EventHub> {
  let sequence = (await store.eventBounds()).latest;
  const listeners = new Set<(events: instanceManager.InstanceEvent[]) => void>();
  const batchSize = options.batchSize ?? 1000;
  let running: Promise<void> | undefined;
  let again = false;
  let closed = false;

  const drain = async () => {
    do {
      again = false;
      for (;;) {
        const events = await store.readEvents(sequence, batchSize);
        if (events.length === 0 || closed) break;
        sequence = events[events.length - 1]!.sequence;
        for (const l of [...listeners]) l(events);
        if (events.length < batchSize) break;
      }
    } while (again && !closed);
  };
  const pump = (): Promise<void> => {
    if (closed) return Promise.resolve();
    if (running) {
      again = true;
      return running;
    }
    running = drain()
      .catch((err: unknown) => options.onError?.(err))
      .finally(() => {
        running = undefined;
      });
    return running;
  };
  const unwatch = store.watch(() => void pump());
  const timer = setInterval(() => void pump(), options.pollIntervalMs ?? INSTANCE_MANAGER_DEFAULTS.eventPollIntervalMs);
  timer.unref();

  return {
    get sequence() {
      return sequence;
    },
    subscribe(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
    pump,
    close() {
      closed = true;
      clearInterval(timer);
      unwatch();
      listeners.clear();
    },
  };
}

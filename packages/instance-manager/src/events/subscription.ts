import { instanceManager } from '@titancompute/protocol';
import { INSTANCE_MANAGER_DEFAULTS } from '../config.js';
import { SequenceOutOfRangeError, ShuttingDownError, SubscriberTooSlowError } from '../errors.js';
import type { Registry } from '../registry/registry.js';
import type { Store } from '../store/store.js';
import type { EventHub } from './event-hub.js';

const { EventType, RemovalReason } = instanceManager;

/** A validated subscription request. */
export interface SubscriptionFilter {
  instanceTypes: readonly instanceManager.InstanceType[];
  instanceIds: readonly string[];
  fromSequence: number;
  includeSnapshot: boolean;
}

/** What a subscription needs. */
export interface SubscriptionDeps {
  store: Store;
  registry: Registry;
  hub: EventHub;
  /** Live events buffered for one slow subscriber before it is cut off. Default 10 000. */
  maxQueue?: number;
  /** Aborted when the server shuts down. */
  shutdownSignal: AbortSignal;
}

/** Whether an event passes the filter (instance types and ids; empty lists match all). */
export function matchesFilter(event: instanceManager.InstanceEvent, filter: SubscriptionFilter): boolean {
  if (filter.instanceTypes.length > 0 && !filter.instanceTypes.includes(event.instanceType)) return false;
  if (filter.instanceIds.length > 0 && !filter.instanceIds.includes(event.instanceId)) return false;
  return true;
}

/**
 * The stream of one SubscribeToInstanceUpdates call: optional snapshot (one ADDED per live
 * instance, `snapshot=true`, as of sequence S), or replay of retained events after
 * `fromSequence`; then one `caught_up` message carrying the sequence live events continue
 * from; then live events. It registers for live events before reading history, and drops
 * duplicates by sequence, so nothing is lost in between. With `includeSnapshot`,
 * `fromSequence` is ignored (the snapshot already contains the state).
 */
export async function* streamInstanceUpdates(
  deps: SubscriptionDeps,
  filter: SubscriptionFilter,
  callSignal: AbortSignal,
): AsyncGenerator<instanceManager.SubscribeToInstanceUpdatesResponse> {
  const maxQueue = deps.maxQueue ?? INSTANCE_MANAGER_DEFAULTS.maxSubscriberQueue;
  const signal = AbortSignal.any([callSignal, deps.shutdownSignal]);
  const queue: instanceManager.InstanceEvent[] = [];
  let overflow = false;
  let wake: (() => void) | undefined;
  const unsubscribe = deps.hub.subscribe((events) => {
    if (overflow) return;
    for (const e of events) if (matchesFilter(e, filter)) queue.push(e);
    if (queue.length > maxQueue) {
      overflow = true;
      queue.length = 0;
    }
    wake?.();
  });
  const message = (event: instanceManager.InstanceEvent | undefined, extra: { snapshot?: boolean; caughtUp?: boolean; sequence: number }) => ({
    event,
    snapshot: extra.snapshot ?? false,
    caughtUp: extra.caughtUp ?? false,
    sequence: extra.sequence,
  });
  try {
    let cursor: number;
    if (filter.includeSnapshot) {
      await deps.registry.ensureSwept();
      const snap = await deps.store.snapshot();
      cursor = snap.sequence;
      const live = new Map(snap.instances.filter((r) => deps.registry.isLive(r)).map((r) => [r.id, r]));
      for (const r of live.values()) {
        const event: instanceManager.InstanceEvent = {
          sequence: snap.sequence,
          type: EventType.EVENT_TYPE_ADDED,
          instanceId: r.id,
          instanceType: r.type,
          relatedInstanceId: '',
          instance: { id: r.id, type: r.type, hostname: r.hostname, address: r.address, metadata: r.metadata },
          removalReason: RemovalReason.REMOVAL_REASON_UNSPECIFIED,
          timestampMs: r.createdAtMs,
        };
        if (!matchesFilter(event, filter)) continue;
        yield message(event, { snapshot: true, sequence: snap.sequence });
        if (signal.aborted) break;
      }
    } else if (filter.fromSequence > 0) {
      const bounds = await deps.store.eventBounds();
      if (filter.fromSequence < bounds.firstRetained - 1) {
        throw new SequenceOutOfRangeError(
          `events after sequence ${filter.fromSequence} were pruned (oldest retained is ${bounds.firstRetained}); resubscribe with include_snapshot`,
          { requested: filter.fromSequence, ...bounds },
        );
      }
      if (filter.fromSequence > bounds.latest) {
        throw new SequenceOutOfRangeError(
          `sequence ${filter.fromSequence} is ahead of the latest event (${bounds.latest}); resubscribe with include_snapshot`,
          { requested: filter.fromSequence, ...bounds },
        );
      }
      cursor = filter.fromSequence;
    } else {
      // Live from now: the store's latest sequence, not the hub's (which lags while a PostgreSQL
      // NOTIFY is on its way) — else events committed before this call would be replayed as live.
      // The listener above is already registered, so nothing after this sequence is missed.
      cursor = Math.max((await deps.store.eventBounds()).latest, deps.hub.sequence, 0);
    }
    // Replay what is stored after the cursor (also covers events committed while the snapshot was sent).
    if (filter.includeSnapshot || filter.fromSequence > 0) {
      for (;;) {
        if (signal.aborted) break;
        const events = await deps.store.readEvents(cursor, 500);
        if (events.length === 0) break;
        for (const e of events) {
          cursor = e.sequence;
          if (matchesFilter(e, filter)) yield message(e, { sequence: e.sequence });
        }
      }
    }
    if (!signal.aborted) yield message(undefined, { caughtUp: true, sequence: cursor });
    for (;;) {
      while (queue.length > 0 && !signal.aborted) {
        const e = queue.shift()!;
        if (e.sequence <= cursor) continue;
        cursor = e.sequence;
        yield message(e, { sequence: e.sequence });
      }
      if (overflow) {
        throw new SubscriberTooSlowError(`subscriber fell more than ${maxQueue} events behind; resubscribe with from_sequence=${cursor}`, {
          sequence: cursor,
          queued: maxQueue,
        });
      }
      if (signal.aborted) break;
      await new Promise<void>((resolve) => {
        const done = () => {
          signal.removeEventListener('abort', done);
          wake = undefined;
          resolve();
        };
        wake = done;
        signal.addEventListener('abort', done);
      });
    }
    if (deps.shutdownSignal.aborted && !callSignal.aborted) {
      throw new ShuttingDownError(`instance manager is shutting down; resubscribe elsewhere with from_sequence=${cursor}`, {
        sequence: cursor,
      });
    }
  } finally {
    unsubscribe();
  }
}

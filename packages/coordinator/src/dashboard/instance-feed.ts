import { setTimeout as sleep } from 'node:timers/promises';
import { createClientFactory, Status, type Channel } from 'nice-grpc';
import { createProtoVersionClientMiddleware, createTitanChannel, instanceManager as im, type ClientTlsOptions } from '@titancompute/protocol';
import type { Logger } from '@titancompute/server-kit';
import type { InstanceEventWire, InstanceGapMessage, InstanceNode, InstanceServiceWire, InstancesMessage } from './dashboard-wire.js';

/** Default {@link InstanceFeedOptions.bufferSize}. */
export const DEFAULT_INSTANCE_EVENT_BUFFER = 500;
/** Events a stream opened without a `Last-Event-ID` gets first (the newest of the buffer). */
export const INITIAL_INSTANCE_EVENTS = 200;

/** Options of {@link createInstanceFeed}. */
export interface InstanceFeedOptions {
  /** `host:port` of the instance manager. */
  address: string;
  /** TLS of the calls (the coordinator's own client files); plaintext when absent. */
  tls?: ClientTlsOptions | undefined;
  logger: Logger;
  /** Events kept for viewers that reconnect. Default {@link DEFAULT_INSTANCE_EVENT_BUFFER}. */
  bufferSize?: number;
  /** How often the instance list is read while someone watches. Default 2 s. */
  refreshIntervalMs?: number;
  /** First retry after a failed subscription, doubling up to `retryMaxMs`. Default 250 ms. */
  retryInitialMs?: number;
  /** Default 10 s. */
  retryMaxMs?: number;
  /** Deadline of each GetAllInstances. Default 5 s. */
  callTimeoutMs?: number;
}

/** Events of the buffer after some sequence, and whether some in between are lost. */
export interface BufferedEvents {
  events: InstanceEventWire[];
  /** Set when events after the asked sequence are no longer buffered (or the sequence restarted). */
  gap: InstanceGapMessage | undefined;
}

/** What the feed tells its listener. */
export type InstanceFeedUpdate =
  | { kind: 'event'; event: InstanceEventWire }
  | { kind: 'gap'; gap: InstanceGapMessage }
  | { kind: 'instances'; instances: InstancesMessage };

/**
 * The coordinator's read-only view of an instance manager for the dashboard: one
 * SubscribeToInstanceUpdates stream kept open (resumed from the last sequence after any break;
 * a refused resume, e.g. events pruned, is a gap) with the newest events buffered, and the live
 * instances (GetAllInstances) re-read while someone watches and right after each event.
 */
export interface InstanceFeed {
  readonly address: string;
  /** Opens the subscription. */
  start(): void;
  /** Ends the subscription and the timers. */
  stop(): Promise<void>;
  /** The live instances as last read. */
  instances(): InstancesMessage;
  /** Buffered events after `sequence`; without one, the newest {@link INITIAL_INSTANCE_EVENTS}. */
  eventsAfter(sequence: number | undefined): BufferedEvents;
  /**
   * Like {@link eventsAfter}, but when the buffer no longer holds every event after `sequence`
   * (e.g. the coordinator restarted since the viewer saw it), the instance manager replays the
   * missing ones (SubscribeToInstanceUpdates from `sequence`); a gap only when it cannot (pruned).
   */
  resume(sequence: number | undefined): Promise<BufferedEvents>;
  /** Events, gaps and changed instance lists; returns the unsubscribe function. */
  subscribe(listener: (update: InstanceFeedUpdate) => void): () => void;
  /** While true, the instance list is re-read every `refreshIntervalMs`. */
  setWatched(watched: boolean): void;
}

const stripPrefix = (name: string | undefined, prefix: string) => (name?.startsWith(prefix) ? name.slice(prefix.length) : '');

/** A service URL without user info, query or fragment (no credential ever reaches a browser). */
export function safeUrl(url: string): string {
  if (url === '') return '';
  const plain = () => url.replace(/^[^@/]*@/, '').replace(/[?#].*$/, '');
  // host:port and the like are no URLs (`user:secret@host` would parse as scheme `user:`).
  if (!url.includes('://')) return plain();
  try {
    const parsed = new URL(url);
    parsed.username = '';
    parsed.password = '';
    parsed.search = '';
    parsed.hash = '';
    return parsed.toString();
  } catch {
    return plain().replace(/^([a-z][a-z0-9+.-]*:\/\/)[^@/]*@/i, '$1');
  }
}

function serviceWire(service: im.Service): InstanceServiceWire {
  return { type: stripPrefix(im.ServiceType[service.type], 'SERVICE_TYPE_'), port: service.port, url: safeUrl(service.url) };
}

/** An instance manager's description as the dashboard shows it: never its metadata. */
export function instanceNode(d: im.InstanceDescription): InstanceNode {
  return {
    id: d.instance?.id ?? '',
    type: stripPrefix(im.InstanceType[d.instance?.type ?? 0], 'INSTANCE_TYPE_'),
    hostname: d.instance?.hostname ?? '',
    address: safeUrl(d.instance?.address ?? ''),
    parentId: d.parentId,
    childIds: [...d.childIds],
    healthy: d.healthy,
    lastHealthCheckMs: d.lastHealthCheckMs,
    createdAtMs: d.createdAtMs,
    services: d.services.map(serviceWire),
  };
}

/** An instance manager's event as the dashboard shows it. */
export function instanceEventWire(e: im.InstanceEvent): InstanceEventWire {
  return {
    sequence: e.sequence,
    type: stripPrefix(im.EventType[e.type], 'EVENT_TYPE_'),
    instanceId: e.instanceId,
    instanceType: stripPrefix(im.InstanceType[e.instanceType], 'INSTANCE_TYPE_'),
    relatedInstanceId: e.relatedInstanceId,
    service: e.service ? serviceWire(e.service) : null,
    removalReason: stripPrefix(im.RemovalReason[e.removalReason], 'REMOVAL_REASON_'),
    timestampMs: e.timestampMs,
  };
}

const errorMessage = (err: unknown) => (err instanceof Error ? err.message : String(err)).split('\n')[0] ?? 'unknown error';

/**
 * Creates an {@link InstanceFeed}; call `start()`.
 *
 * @example
 * ```ts
 * const feed = createInstanceFeed({ address: '127.0.0.1:50050', logger });
 * feed.subscribe((u) => u.kind === 'event' && console.log(u.event.type, u.event.instanceId));
 * feed.start();
 * ```
 */
export function createInstanceFeed(options: InstanceFeedOptions): InstanceFeed {
  const { address, logger } = options;
  const bufferSize = Math.max(1, options.bufferSize ?? DEFAULT_INSTANCE_EVENT_BUFFER);
  const refreshIntervalMs = options.refreshIntervalMs ?? 2000;
  const retryInitialMs = options.retryInitialMs ?? 250;
  const retryMaxMs = Math.max(retryInitialMs, options.retryMaxMs ?? 10_000);
  const callTimeoutMs = options.callTimeoutMs ?? 5000;

  let channel: Channel | undefined;
  let subscribeClient: im.SubscribeServiceClient | undefined;
  let getClient: im.GetServiceClient | undefined;
  const listeners = new Set<(update: InstanceFeedUpdate) => void>();
  const emit = (update: InstanceFeedUpdate) => {
    for (const listener of listeners) listener(update);
  };

  /** Newest last. */
  let buffer: InstanceEventWire[] = [];
  /** Events after this sequence are all in the buffer (from when the feed first caught up). */
  let floor: number | undefined;
  let lastSequence = 0;
  let subscriptionError: string | null = null;
  let state: InstancesMessage = { configured: true, address, connected: false, error: null, instances: [], updatedAtMs: null };
  let stateJson = '';

  let stopped = false;
  let loop: Promise<void> | undefined;
  const controller = new AbortController();
  let watched = false;
  let refreshTimer: NodeJS.Timeout | undefined;
  let soonTimer: NodeJS.Timeout | undefined;
  let refreshing: Promise<void> | undefined;

  const publish = (next: InstancesMessage) => {
    const json = JSON.stringify({ ...next, updatedAtMs: null });
    state = next;
    if (json === stateJson) return;
    stateJson = json;
    emit({ kind: 'instances', instances: next });
  };

  const refresh = () =>
    (refreshing ??= (async () => {
      if (!getClient || stopped) return;
      try {
        const r = await getClient.getAllInstances(
          { type: 0, parentId: '', serviceType: 0, healthyOnly: false },
          { signal: AbortSignal.any([controller.signal, AbortSignal.timeout(callTimeoutMs)]) },
        );
        const instances = r.instances.map(instanceNode).sort((a, b) => a.id.localeCompare(b.id));
        publish({ ...state, connected: subscriptionError === null, error: subscriptionError, instances, updatedAtMs: Date.now() });
      } catch (err) {
        if (stopped) return;
        publish({ ...state, connected: false, error: errorMessage(err) });
      }
    })().finally(() => (refreshing = undefined)));

  /** Reads the list soon (coalescing bursts of events). */
  const refreshSoon = () => {
    if (soonTimer || stopped) return;
    soonTimer = setTimeout(() => {
      soonTimer = undefined;
      void refresh();
    }, 100);
    soonTimer.unref();
  };

  const gap = (reason: string) => {
    const message: InstanceGapMessage = { afterSequence: lastSequence, reason };
    buffer = [];
    floor = undefined;
    lastSequence = 0;
    emit({ kind: 'gap', gap: message });
  };

  const deliver = (event: InstanceEventWire) => {
    buffer.push(event);
    if (buffer.length > bufferSize) {
      const dropped = buffer.splice(0, buffer.length - bufferSize);
      floor = dropped.at(-1)?.sequence ?? floor;
    }
    emit({ kind: 'event', event });
    refreshSoon();
  };

  const subscribeLoop = async () => {
    let failures = 0;
    let reported = false;
    while (!stopped) {
      try {
        const stream = subscribeClient!.subscribeToInstanceUpdates(
          { instanceTypes: [], instanceIds: [], fromSequence: lastSequence, includeSnapshot: false },
          { signal: controller.signal },
        );
        for await (const message of stream) {
          if (message.caughtUp) {
            failures = 0;
            if (reported) logger.info({ instanceManager: address }, 'instance manager events resumed');
            reported = false;
            lastSequence = Math.max(lastSequence, message.sequence);
            floor ??= lastSequence;
            subscriptionError = null;
            publish({ ...state, connected: true, error: null });
            void refresh();
            continue;
          }
          const event = message.event;
          if (!event || message.snapshot || event.sequence <= lastSequence) continue;
          lastSequence = event.sequence;
          deliver(instanceEventWire(event));
        }
        if (stopped) return;
        subscriptionError = 'the instance manager ended the subscription';
      } catch (err) {
        if (stopped) return;
        if ((err as { code?: unknown }).code === Status.OUT_OF_RANGE) {
          // Pruned events, or a sequence ahead of the instance manager's (its state was reset).
          gap(errorMessage(err));
          continue;
        }
        subscriptionError = errorMessage(err);
      }
      publish({ ...state, connected: false, error: subscriptionError });
      if (!reported) logger.warn({ instanceManager: address, reason: subscriptionError }, 'instance manager events unavailable; retrying');
      reported = true;
      failures += 1;
      const delay = Math.min(retryMaxMs, retryInitialMs * 2 ** Math.min(failures - 1, 16));
      await sleep(delay, undefined, { signal: controller.signal }).catch(() => undefined);
    }
  };

  const eventsAfter = (sequence: number | undefined): BufferedEvents => {
    const newest = buffer.at(-1)?.sequence;
    if (sequence === undefined) return { events: buffer.slice(-INITIAL_INSTANCE_EVENTS), gap: undefined };
    if (newest !== undefined && sequence > newest) {
      return { events: buffer.slice(), gap: { afterSequence: sequence, reason: "the instance manager's event sequence restarted" } };
    }
    const events = buffer.filter((e) => e.sequence > sequence);
    const lost = floor === undefined || sequence < floor;
    return { events, gap: lost && sequence > 0 ? { afterSequence: sequence, reason: 'older events are no longer buffered by the coordinator' } : undefined };
  };

  return {
    address,
    start() {
      if (channel || stopped) return;
      channel = createTitanChannel(address, {
        ...(options.tls ? { tls: options.tls } : {}),
        channelOptions: { 'grpc.initial_reconnect_backoff_ms': retryInitialMs, 'grpc.max_reconnect_backoff_ms': retryMaxMs },
      });
      const factory = createClientFactory().use(createProtoVersionClientMiddleware());
      subscribeClient = factory.create(im.SubscribeServiceDefinition, channel);
      getClient = factory.create(im.GetServiceDefinition, channel);
      loop = subscribeLoop();
    },
    async stop() {
      stopped = true;
      controller.abort();
      if (refreshTimer) clearInterval(refreshTimer);
      if (soonTimer) clearTimeout(soonTimer);
      await Promise.allSettled([loop, refreshing]);
      channel?.close();
    },
    instances: () => state,
    eventsAfter,
    async resume(sequence) {
      const local = eventsAfter(sequence);
      if (!local.gap || sequence === undefined || !subscribeClient || stopped) return local;
      // A sequence past the instance manager's latest (its state was reset): nothing to replay. Before the feed has
      // caught up (the coordinator just started) the replay itself finds out.
      if (floor !== undefined && sequence > lastSequence) return local;
      const replay = new AbortController();
      const timer = setTimeout(() => replay.abort(), callTimeoutMs);
      try {
        const replayed: InstanceEventWire[] = [];
        let caughtUp: number | undefined;
        const stream = subscribeClient.subscribeToInstanceUpdates(
          { instanceTypes: [], instanceIds: [], fromSequence: sequence, includeSnapshot: false },
          { signal: AbortSignal.any([replay.signal, controller.signal]) },
        );
        for await (const message of stream) {
          if (message.caughtUp) {
            caughtUp = message.sequence;
            break;
          }
          if (message.event && !message.snapshot && message.event.sequence > sequence) replayed.push(instanceEventWire(message.event));
        }
        if (caughtUp === undefined) return local;
        // Everything up to `caughtUp` came from the replay; anything newer is in the buffer (or on its way).
        const upTo = Math.max(caughtUp, replayed.at(-1)?.sequence ?? 0);
        return { events: [...replayed, ...buffer.filter((e) => e.sequence > upTo)], gap: undefined };
      } catch (err) {
        return { events: local.events, gap: { afterSequence: sequence, reason: errorMessage(err) } };
      } finally {
        clearTimeout(timer);
        replay.abort();
      }
    },
    subscribe(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
    setWatched(next) {
      if (next === watched || stopped) return;
      watched = next;
      if (refreshTimer) clearInterval(refreshTimer);
      refreshTimer = undefined;
      if (watched) {
        void refresh();
        refreshTimer = setInterval(() => void refresh(), refreshIntervalMs);
        refreshTimer.unref();
      }
    },
  };
}

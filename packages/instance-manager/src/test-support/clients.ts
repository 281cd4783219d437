import { createClientFactory, type Channel } from 'nice-grpc';
import { createProtoVersionClientMiddleware, createTitanChannel, instanceManager, stats } from '@titancompute/protocol';

/** Clients of every instance-manager service over one channel. */
export interface ImClients {
  try: instanceManager.TryServiceClient;
  sub: instanceManager.SubscribeServiceClient;
  post: instanceManager.PostServiceClient;
  get: instanceManager.GetServiceClient;
  stats: stats.StatsServiceClient;
  channel: Channel;
  close(): void;
}

/** Connects to an instance manager at `127.0.0.1:port`. */
export function connectClients(port: number): ImClients {
  const channel = createTitanChannel(`127.0.0.1:${port}`);
  const factory = createClientFactory().use(createProtoVersionClientMiddleware());
  return {
    try: factory.create(instanceManager.TryServiceDefinition, channel),
    sub: factory.create(instanceManager.SubscribeServiceDefinition, channel),
    post: factory.create(instanceManager.PostServiceDefinition, channel),
    get: factory.create(instanceManager.GetServiceDefinition, channel),
    stats: factory.create(stats.StatsServiceDefinition, channel),
    channel,
    close: () => channel.close(),
  };
}

/** An instance with defaults. */
export function makeInstance(id: string, overrides: Partial<instanceManager.Instance> = {}): instanceManager.Instance {
  return {
    id,
    type: instanceManager.InstanceType.INSTANCE_TYPE_INFERENCE_AGENT,
    hostname: `host-${id}`,
    address: `${id}.local:50052`,
    metadata: { zone: 'a' },
    ...overrides,
  };
}

/**
 * Collects a subscription's messages in the background; `until(pred)` waits (bounded) for
 * a condition on what arrived so far. `stop()` cancels the call.
 */
export function collect(
  clients: ImClients,
  request: Partial<instanceManager.SubscribeToInstanceUpdatesRequest>,
): {
  messages: instanceManager.SubscribeToInstanceUpdatesResponse[];
  events(): instanceManager.InstanceEvent[];
  until(pred: (m: instanceManager.SubscribeToInstanceUpdatesResponse[]) => boolean, timeoutMs?: number): Promise<void>;
  done: Promise<unknown>;
  stop(): void;
} {
  const controller = new AbortController();
  const messages: instanceManager.SubscribeToInstanceUpdatesResponse[] = [];
  const waiters = new Set<() => void>();
  const done = (async () => {
    try {
      for await (const m of clients.sub.subscribeToInstanceUpdates(request, { signal: controller.signal })) {
        messages.push(m);
        for (const w of [...waiters]) w();
      }
      return undefined;
    } catch (err) {
      return err;
    } finally {
      for (const w of [...waiters]) w();
    }
  })();
  return {
    messages,
    events: () => messages.filter((m) => m.event && !m.snapshot).map((m) => m.event!),
    done,
    stop: () => controller.abort(),
    until(pred, timeoutMs = 5000) {
      return new Promise<void>((resolve, reject) => {
        if (pred(messages)) return resolve();
        const timer = setTimeout(() => {
          waiters.delete(check);
          reject(new Error(`timed out waiting; got ${JSON.stringify(messages.map((m) => [m.event?.type, m.event?.instanceId, m.sequence, m.caughtUp]))}`));
        }, timeoutMs);
        timer.unref();
        const check = () => {
          if (pred(messages)) {
            clearTimeout(timer);
            waiters.delete(check);
            resolve();
          }
        };
        waiters.add(check);
      });
    },
  };
}

/** Resolves after `ms`. */
export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

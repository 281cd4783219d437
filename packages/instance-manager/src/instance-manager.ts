import { instanceManager, stats, type ProtoVersionPolicy } from '@titancompute/protocol';
import { createLogger, createServiceServer, type Logger, type ServerTlsOptions } from '@titancompute/server-kit';
import type { LoggerOptions } from '@titancompute/server-kit';
import { defaultOutageGapMs, INSTANCE_MANAGER_DEFAULTS, SERVICE_NAME } from './config.js';
import { createEventHub } from './events/event-hub.js';
import { createRegistry } from './registry/registry.js';
import { startSweeper } from './registry/sweeper.js';
import { createGetService } from './service/get-service.js';
import { createPostService } from './service/post-service.js';
import { createStatsService } from './service/stats-service.js';
import { createSubscribeService } from './service/subscribe-service.js';
import { createTryService } from './service/try-service.js';
import { createStore, parseStorageSpec } from './store/create-store.js';
import type { StorageSpec } from './store/store.js';

const DEFAULTS = INSTANCE_MANAGER_DEFAULTS;

/** Options of {@link startInstanceManager}. Every default is in {@link INSTANCE_MANAGER_DEFAULTS} (`config.ts`). */
export interface InstanceManagerOptions {
  /** Default `0.0.0.0`. */
  host?: string;
  /** Default 50050; 0 picks a free port. */
  port?: number;
  /**
   * `memory`, `sqlite`, a `postgres://` URL, or a {@link StorageSpec}. Default: `sqlite` when
   * `dataDir` is given, else `memory`.
   */
  storage?: StorageSpec | string;
  /** Where SQLite keeps `instance-manager.db`. Default `./.titan/instance-manager`. */
  dataDir?: string;
  /** Default 30 000 ms. */
  staleTimeoutMs?: number;
  /** Default 1000 ms. */
  sweepIntervalMs?: number;
  /**
   * Health checks are answered from memory and written to the storage in one transaction at most
   * this long after the first unwritten one; staleness counts them all the same. A crash (not a
   * stop, which writes them) loses at most this long of last-seen times, never an instance or an
   * event. Default 100 ms.
   */
  healthFlushIntervalMs?: number;
  /**
   * A gap longer than this with no sweep by any replica (all stopped, paused, or cut off from
   * the database) counts as an outage of the registry: afterwards every live instance gets a
   * fresh grace period of one stale timeout before it can be marked stale. Default
   * max(3000, 3 × sweepIntervalMs).
   */
  outageGapMs?: number;
  /** Events kept for resuming subscribers. Default 100 000. */
  eventRetention?: number;
  /** Live events buffered per subscriber before it is cut off (RESOURCE_EXHAUSTED). Default 10 000. */
  maxSubscriberQueue?: number;
  /** How often to re-read the events table without a notification. Default 1000 ms. */
  eventPollIntervalMs?: number;
  logger?: Logger;
  /** Used when no `logger` is given. Default `info`. */
  logLevel?: LoggerOptions['level'];
  /** TLS (with `ca`, mTLS). Default: plaintext. */
  tls?: ServerTlsOptions;
  /** Default `strict`. */
  protoVersionPolicy?: ProtoVersionPolicy;
  /** Drain time of {@link RunningInstanceManager.stop}. Default 10 000 ms. */
  shutdownTimeoutMs?: number;
  /** Clock (unix ms), for tests. */
  now?: () => number;
}

/** A running instance manager. */
export interface RunningInstanceManager {
  port: number;
  /** `host:port` it listens on. */
  address: string;
  /** Which backend it uses. */
  backend: 'memory' | 'sqlite' | 'postgres';
  /** Ends subscriptions, drains calls, stops the sweeper and closes the database. Idempotent. */
  stop(): Promise<void>;
}

/**
 * Starts the instance manager: TryService, SubscribeService, PostService, GetService and
 * StatsService on one gRPC server (with health, reflection and proto_version checks).
 *
 * @example
 * ```ts
 * const im = await startInstanceManager({ host: '127.0.0.1', port: 0, storage: 'sqlite', dataDir: '/var/lib/titan' });
 * console.log(im.address);
 * await im.stop();
 * ```
 */
export async function startInstanceManager(options: InstanceManagerOptions = {}): Promise<RunningInstanceManager> {
  const logger = options.logger ?? createLogger({ service: SERVICE_NAME, level: options.logLevel ?? DEFAULTS.logLevel });
  const spec: StorageSpec =
    typeof options.storage === 'object'
      ? options.storage
      : parseStorageSpec(options.storage ?? (options.dataDir ? 'sqlite' : 'memory'), options.dataDir ?? DEFAULTS.dataDir);
  const store = await createStore(spec, { onError: (err) => logger.warn({ err }, 'storage connection error') });
  try {
    const sweepIntervalMs = options.sweepIntervalMs ?? DEFAULTS.sweepIntervalMs;
    const registry = createRegistry(store, {
      staleTimeoutMs: options.staleTimeoutMs ?? DEFAULTS.staleTimeoutMs,
      outageGapMs: options.outageGapMs ?? defaultOutageGapMs(sweepIntervalMs),
      healthFlushIntervalMs: options.healthFlushIntervalMs ?? DEFAULTS.healthFlushIntervalMs,
      onFlushError: (err) => logger.warn({ err }, 'writing health checks failed; retrying with the next flush'),
      onOutage: (outage) =>
        logger.info(
          {
            downSince: outage.lastSeenMs === undefined ? undefined : new Date(outage.lastSeenMs).toISOString(),
            graceUntil: new Date(outage.graceUntilMs).toISOString(),
          },
          'registry was down (or never ran): every live instance gets a fresh stale timeout before it can be marked stale',
        ),
      ...(options.now ? { now: options.now } : {}),
    });
    // Before serving: record this replica's presence, so that a restart after an outage judges
    // staleness from now (grace) and a replica joining running ones shares their up period.
    await registry.sweep();
    const hub = await createEventHub(store, {
      pollIntervalMs: options.eventPollIntervalMs ?? DEFAULTS.eventPollIntervalMs,
      onError: (err) => logger.warn({ err }, 'reading events failed'),
    });
    // A death caused through another replica (PostgreSQL): answer that instance's next health
    // check from the storage, not from memory.
    const unwatchDeaths = hub.subscribe((events) => {
      for (const e of events) if (e.type === instanceManager.EventType.EVENT_TYPE_REMOVED) registry.forget(e.instanceId);
    });
    const server = createServiceServer({
      logger,
      host: options.host ?? DEFAULTS.host,
      port: options.port ?? DEFAULTS.port,
      tls: options.tls,
      protoVersionPolicy: options.protoVersionPolicy ?? DEFAULTS.protoVersionPolicy,
      shutdownTimeoutMs: options.shutdownTimeoutMs ?? DEFAULTS.shutdownTimeoutMs,
    });
    server.add(instanceManager.TryServiceDefinition, createTryService(registry, { shutdownSignal: server.shutdownSignal }));
    server.add(
      instanceManager.SubscribeServiceDefinition,
      createSubscribeService({
        store,
        registry,
        hub,
        shutdownSignal: server.shutdownSignal,
        // 0 (like unset) means the default.
        maxQueue: options.maxSubscriberQueue || DEFAULTS.maxSubscriberQueue,
      }),
    );
    server.add(instanceManager.PostServiceDefinition, createPostService(registry, store));
    server.add(instanceManager.GetServiceDefinition, createGetService(registry, store));
    server.add(stats.StatsServiceDefinition, createStatsService(store, registry.now));
    const stopSweeper = startSweeper({
      registry,
      store,
      logger,
      intervalMs: sweepIntervalMs,
      eventRetention: options.eventRetention ?? DEFAULTS.eventRetention,
    });
    let listening: { port: number; address: string };
    try {
      listening = await server.listen();
    } catch (err) {
      await stopSweeper();
      unwatchDeaths();
      hub.close();
      await registry.flush();
      throw err;
    }
    let stopping: Promise<void> | undefined;
    return {
      ...listening,
      backend: store.backend,
      stop() {
        stopping ??= (async () => {
          await server.shutdown();
          await stopSweeper();
          unwatchDeaths();
          hub.close();
          // Every acknowledged health check reaches the storage before it closes.
          await registry.flush();
          await store.close();
          logger.info('instance manager stopped');
        })();
        return stopping;
      },
    };
  } catch (err) {
    await store.close();
    throw err;
  }
}

/**
 * `@titancompute/instance-manager`: a registry of running instances with health checks,
 * parent-child cascade, live events (with resume and snapshot), metrics and per-host stats,
 * stored in memory, SQLite (default) or PostgreSQL (several replicas on one database).
 *
 * @example
 * ```ts
 * import { createClientFactory } from 'nice-grpc';
 * import { createProtoVersionClientMiddleware, createTitanChannel, instanceManager } from '@titancompute/protocol';
 * import { startInstanceManager } from '@titancompute/instance-manager';
 *
 * const im = await startInstanceManager({ host: '127.0.0.1', port: 0, storage: 'sqlite', dataDir: './data' });
 * const channel = createTitanChannel(`127.0.0.1:${im.port}`);
 * const client = createClientFactory().use(createProtoVersionClientMiddleware())
 *   .create(instanceManager.TryServiceDefinition, channel);
 * await client.tryAddInstance({ instance: { id: 'agent-1', type: instanceManager.InstanceType.INSTANCE_TYPE_INFERENCE_AGENT,
 *   hostname: 'gpu-1', address: 'gpu-1:50052', metadata: {} } });
 * const { healthy } = await client.tryHealthCheck({ instanceId: 'agent-1' });
 * await im.stop();
 * ```
 *
 * @packageDocumentation
 */
export {
  startInstanceManager,
  type InstanceManagerOptions,
  type RunningInstanceManager,
} from './instance-manager.js';
export {
  defaultOutageGapMs,
  INSTANCE_MANAGER_DEFAULTS,
  instanceManagerOptionSpec,
  type InstanceManagerConfig,
} from './config.js';
export {
  createRegistry,
  MAX_SERVICES_PER_INSTANCE,
  type HealthCheckResult,
  type ListCriteria,
  type Outage,
  type Registry,
  type RegistryOptions,
  type TryResult,
} from './registry/registry.js';
export { startSweeper, type SweeperOptions } from './registry/sweeper.js';
export { createEventHub, type EventHub, type EventHubOptions } from './events/event-hub.js';
export { matchesFilter, streamInstanceUpdates, type SubscriptionDeps, type SubscriptionFilter } from './events/subscription.js';
export { createStore, parseStorageSpec } from './store/create-store.js';
export { createMemoryStore } from './store/memory-store.js';
export { createSqliteStore, SQLITE_FILE_NAME } from './store/sqlite-store.js';
export { createPostgresStore, type PostgresStoreOptions } from './store/postgres-store.js';
export type { InstanceRecord, MetricsKind, NewEvent, Presence, StorageSpec, Store, StoreTx } from './store/store.js';
export { instanceIdSchema, METADATA_LIMITS, validate } from './validation/schemas.js';
export {
  InstanceManagerError,
  NotFoundError,
  SequenceOutOfRangeError,
  ShuttingDownError,
  StorageError,
  SubscriberTooSlowError,
  ValidationError,
} from './errors.js';

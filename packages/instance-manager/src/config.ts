import {
  COMMON_DEFAULTS,
  commonOptions,
  ConfigError,
  defaultDataDir,
  durationOption,
  formatDuration,
  intOption,
  requiredStringOption,
  type ConfigOf,
} from '@titancompute/server-kit';
import { parseStorageSpec } from './store/create-store.js';
import type { StorageSpec } from './store/store.js';

/** The service name: the bin's name and the `service` field of every log line. */
export const SERVICE_NAME = 'titan-instance-manager';

/** The service's short name: its default data directory is `./.titan/instance-manager`. */
const SERVICE = 'instance-manager';

/**
 * Every default of the instance manager, written once: `startInstanceManager` applies them and
 * `titan-instance-manager`'s flags show and use them ({@link instanceManagerOptionSpec}). The
 * common ones come from server-kit's `COMMON_DEFAULTS`.
 */
export const INSTANCE_MANAGER_DEFAULTS = {
  ...COMMON_DEFAULTS,
  port: 50050,
  dataDir: defaultDataDir(SERVICE),
  /** The bin's storage; `startInstanceManager` without `storage` uses sqlite with a `dataDir`, else memory. */
  storage: 'sqlite',
  /** An instance without a health check for this long is dead (ms). */
  staleTimeoutMs: 30_000,
  /** How often stale instances are swept (ms). */
  sweepIntervalMs: 1000,
  /**
   * Health checks are answered from memory and written at most this long after the first
   * unwritten one, in one transaction (ms). A crash loses at most this long of last-seen times.
   */
  healthFlushIntervalMs: 100,
  /** Events kept so subscribers can resume from a sequence. */
  eventRetention: 100_000,
  /** Live events buffered per subscriber before it is cut off (RESOURCE_EXHAUSTED). */
  maxSubscriberQueue: 10_000,
  /** How often the event hub re-reads the events table without a notification (ms). */
  eventPollIntervalMs: 1000,
  /** Lower bound of the outage gap (ms); see {@link defaultOutageGapMs}. */
  minOutageGapMs: 3000,
} as const;

const D = INSTANCE_MANAGER_DEFAULTS;

/**
 * Every option of `titan-instance-manager` (flags, environment variables, defaults): the common
 * service options plus storage, staleness and retention. The defaults are
 * {@link INSTANCE_MANAGER_DEFAULTS}.
 */
export const instanceManagerOptionSpec = {
  ...commonOptions({ service: SERVICE, port: D.port, portEnv: ['TITAN_INSTANCE_MANAGER_PORT'] }),
  storage: requiredStringOption({
    flag: 'storage',
    env: ['TITAN_STORAGE'],
    default: D.storage,
    description: 'sqlite (in --data-dir), memory (lost on exit) or a postgres://user@host:port/db URL (replicas may share it).',
  }),
  staleTimeoutMs: durationOption(
    {
      flag: 'stale-timeout',
      env: ['TITAN_STALE_TIMEOUT'],
      default: formatDuration(D.staleTimeoutMs),
      description: 'An instance without a health check for this long is dead (and so are its descendants).',
    },
    10,
  ),
  sweepIntervalMs: durationOption(
    { flag: 'sweep-interval', env: ['TITAN_SWEEP_INTERVAL'], default: formatDuration(D.sweepIntervalMs), description: 'How often stale instances are swept.' },
    10,
  ),
  healthFlushIntervalMs: durationOption(
    {
      flag: 'health-flush-interval',
      env: ['TITAN_HEALTH_FLUSH_INTERVAL'],
      default: formatDuration(D.healthFlushIntervalMs),
      description:
        'Health checks are answered from memory and written in one transaction this often; a crash loses at most this long of last-seen times (never an instance or an event).',
    },
    1,
    10_000,
  ),
  eventRetention: intOption(
    {
      flag: 'event-retention',
      env: ['TITAN_EVENT_RETENTION'],
      default: String(D.eventRetention),
      description: 'Events kept so subscribers can resume from a sequence.',
    },
    1,
    100_000_000,
  ),
};

/** The parsed config of `titan-instance-manager`. */
export type InstanceManagerConfig = ConfigOf<typeof instanceManagerOptionSpec>;

/**
 * The outage gap that goes with a sweep interval: max(3000 ms, 3 × `sweepIntervalMs`). A gap
 * this long with no sweep by any replica counts as an outage of the registry.
 */
export function defaultOutageGapMs(sweepIntervalMs: number): number {
  return Math.max(INSTANCE_MANAGER_DEFAULTS.minOutageGapMs, 3 * sweepIntervalMs);
}

/**
 * The storage a parsed config names (`--storage` with `--data-dir`). Throws {@link ConfigError}
 * naming `--storage` when it is not `sqlite`, `memory` or a `postgres://` URL.
 */
export function storageFromConfig(config: Pick<InstanceManagerConfig, 'storage' | 'dataDir'>): StorageSpec {
  try {
    return parseStorageSpec(config.storage, config.dataDir);
  } catch (cause) {
    throw new ConfigError(
      `invalid --storage (TITAN_STORAGE): expected sqlite, memory or a postgres:// URL, got ${JSON.stringify(config.storage)}`,
      { option: 'storage', source: '--storage', expected: 'sqlite, memory or a postgres:// URL', got: config.storage },
      { cause },
    );
  }
}

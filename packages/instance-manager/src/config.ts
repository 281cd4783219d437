import {
  commonOptions,
  ConfigError,
  durationOption,
  intOption,
  requiredStringOption,
  type ConfigOf,
  type ConfigSpec,
} from '@titancompute/server-kit';
import { parseStorageSpec } from './store/create-store.js';
import type { StorageSpec } from './store/store.js';

/** The service name: the bin's name and the `service` field of every log line. */
export const SERVICE_NAME = 'titan-instance-manager';

/**
 * Every option of `titan-instance-manager` (flags, environment variables, defaults): the common
 * service options plus storage, staleness and retention. The defaults written here are the only
 * ones: {@link INSTANCE_MANAGER_DEFAULTS} (used by `startInstanceManager`) is parsed from them.
 */
export const instanceManagerOptionSpec = {
  ...commonOptions({ service: 'instance-manager', port: 50050, portEnv: ['TITAN_INSTANCE_MANAGER_PORT'] }),
  storage: requiredStringOption({
    flag: 'storage',
    env: ['TITAN_STORAGE'],
    default: 'sqlite',
    description: 'sqlite (in --data-dir), memory (lost on exit) or a postgres://user@host:port/db URL (replicas may share it).',
  }),
  staleTimeoutMs: durationOption(
    {
      flag: 'stale-timeout',
      env: ['TITAN_STALE_TIMEOUT'],
      default: '30s',
      description: 'An instance without a health check for this long is dead (and so are its descendants).',
    },
    10,
  ),
  sweepIntervalMs: durationOption(
    { flag: 'sweep-interval', env: ['TITAN_SWEEP_INTERVAL'], default: '1s', description: 'How often stale instances are swept.' },
    10,
  ),
  eventRetention: intOption(
    {
      flag: 'event-retention',
      env: ['TITAN_EVENT_RETENTION'],
      default: '100000',
      description: 'Events kept so subscribers can resume from a sequence.',
    },
    1,
    100_000_000,
  ),
};

/** The parsed config of `titan-instance-manager`. */
export type InstanceManagerConfig = ConfigOf<typeof instanceManagerOptionSpec>;

/** Each option's default, parsed by the option's own schema (so the spec's string is the one source). */
function defaultsOf<S extends ConfigSpec>(spec: S): ConfigOf<S> {
  const out: Record<string, unknown> = {};
  for (const [key, option] of Object.entries(spec)) out[key] = option.schema.parse(option.default);
  return out as ConfigOf<S>;
}

/**
 * Every default of the instance manager, once: the options' defaults (parsed from
 * {@link instanceManagerOptionSpec}) plus the settings only the programmatic API offers.
 */
export const INSTANCE_MANAGER_DEFAULTS = {
  ...defaultsOf(instanceManagerOptionSpec),
  /** Live events buffered per subscriber before it is cut off (RESOURCE_EXHAUSTED). */
  maxSubscriberQueue: 10_000,
  /** How often the event hub re-reads the events table without a notification (ms). */
  eventPollIntervalMs: 1000,
  /** Lower bound of the outage gap (ms); see {@link defaultOutageGapMs}. */
  minOutageGapMs: 3000,
} as const;

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

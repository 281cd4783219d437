#!/usr/bin/env node
import {
  commonOptions,
  ConfigError,
  createLogger,
  durationOption,
  intOption,
  loadConfig,
  onShutdownSignal,
  readPackageVersion,
  requiredStringOption,
  runMain,
  serverTlsFromConfig,
} from '@titancompute/server-kit';
import { parseStorageSpec } from './store/create-store.js';
import { startInstanceManager } from './server/start-instance-manager.js';

const NAME = 'titan-instance-manager';

/** The bin's options: the common ones plus storage, staleness and retention. */
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

runMain(async () => {
  const config = loadConfig(instanceManagerOptionSpec, {
    name: NAME,
    summary: 'Registry of instances with health checks, parent-child cascade, live events and metrics (gRPC).',
    version: readPackageVersion(import.meta.url),
  });
  let storage;
  try {
    storage = parseStorageSpec(config.storage, config.dataDir);
  } catch (cause) {
    throw new ConfigError(`invalid --storage (TITAN_STORAGE): expected sqlite, memory or a postgres:// URL, got ${JSON.stringify(config.storage)}`, {
      option: 'storage',
      source: '--storage',
      expected: 'sqlite, memory or a postgres:// URL',
      got: config.storage,
    }, { cause });
  }
  const logger = createLogger({ service: NAME, level: config.logLevel, format: config.logFormat });
  const tls = serverTlsFromConfig(config);
  const im = await startInstanceManager({
    logger,
    host: config.host,
    port: config.port,
    storage,
    dataDir: config.dataDir,
    staleTimeoutMs: config.staleTimeoutMs,
    sweepIntervalMs: config.sweepIntervalMs,
    eventRetention: config.eventRetention,
    protoVersionPolicy: config.protoVersionPolicy,
    shutdownTimeoutMs: config.shutdownTimeoutMs,
    ...(tls ? { tls } : {}),
  });
  onShutdownSignal(async (signal) => {
    logger.info({ signal }, 'shutting down');
    await im.stop();
    process.exit(0);
  });
}, NAME);

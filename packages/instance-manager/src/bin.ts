#!/usr/bin/env node
// The `titan-instance-manager` bin: parse the options, start, stop on SIGTERM/SIGINT. It exports
// nothing (importing it would start a server): the options live in ./config.ts.
// First, before anything allocates: the garbage collector's memory policy (see gc-tuning.ts).
import './gc-tuning.js';
import { createLogger, loadConfig, onShutdownSignal, readPackageVersion, runMain, serverTlsFromConfig } from '@titancompute/server-kit';
import { instanceManagerOptionSpec, SERVICE_NAME, storageFromConfig } from './config.js';
import { startInstanceManager } from './instance-manager.js';

runMain(async () => {
  const config = loadConfig(instanceManagerOptionSpec, {
    name: SERVICE_NAME,
    summary: 'Registry of instances with health checks, parent-child cascade, live events and metrics (gRPC).',
    version: readPackageVersion(import.meta.url),
  });
  const storage = storageFromConfig(config);
  const logger = createLogger({ service: SERVICE_NAME, level: config.logLevel, format: config.logFormat });
  const tls = serverTlsFromConfig(config);
  const im = await startInstanceManager({
    logger,
    host: config.host,
    port: config.port,
    storage,
    dataDir: config.dataDir,
    staleTimeoutMs: config.staleTimeoutMs,
    sweepIntervalMs: config.sweepIntervalMs,
    healthFlushIntervalMs: config.healthFlushIntervalMs,
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
}, SERVICE_NAME);

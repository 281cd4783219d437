#!/usr/bin/env node
import { createLogger, loadConfig, onShutdownSignal, readPackageVersion, runMain, startTracing } from '@titancompute/server-kit';
import { COMMAND_HELP, runCommand } from './commands.js';
import { coordinatorConfigSpec, coordinatorOptionsFromConfig, SERVICE_NAME } from './config.js';
import { startCoordinator } from './coordinator.js';

const SUMMARY = `TitanCompute coordinator: registers agents, schedules inference requests and signs session tokens. ${COMMAND_HELP}`;

runMain(async () => {
  const config = loadConfig(coordinatorConfigSpec(), {
    name: SERVICE_NAME,
    summary: SUMMARY,
    allowPositionals: true,
    version: readPackageVersion(import.meta.url),
  });
  const result = await runCommand(config, config.positionals);
  if (result) {
    process.stdout.write(`${JSON.stringify(result.output)}\n`);
    if (result.exitCode !== 0) process.exitCode = result.exitCode;
    return;
  }
  const logger = createLogger({ service: SERVICE_NAME, level: config.logLevel, format: config.logFormat });
  // OpenTelemetry only when OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT is set (the SDK is not even loaded otherwise).
  const tracing = await startTracing({ serviceName: SERVICE_NAME, serviceVersion: readPackageVersion(import.meta.url), logger });
  if (tracing.enabled) logger.info({ endpoint: tracing.endpoint }, 'tracing: exporting spans (OTLP)');
  const coordinator = await startCoordinator({ ...coordinatorOptionsFromConfig(config), logger });
  process.on('SIGHUP', () => {
    void coordinator.reloadKeys().then((changed) => logger.info({ changed }, 'keyring reloaded (SIGHUP)'));
  });
  onShutdownSignal(async (signal) => {
    logger.info({ signal }, 'shutting down');
    await coordinator.stop();
    await tracing.shutdown();
    process.exit(0);
  });
}, SERVICE_NAME);

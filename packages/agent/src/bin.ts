#!/usr/bin/env node
// titan-agent: parses the options, starts the agent, stops it on SIGTERM/SIGINT/SIGHUP. Exports nothing.
import { ConfigError, createLogger, loadConfig, onShutdownSignal, readPackageVersion, runMain, startTracing } from '@titancompute/server-kit';
import { startAgent } from './agent.js';
import { agentConfigSpec, agentOptionsFromConfig } from './config.js';
import { AgentConfigError } from './errors.js';

runMain(async () => {
  const config = loadConfig(agentConfigSpec(), {
    name: 'titan-agent',
    summary: 'TitanCompute agent: verifies session tokens and streams tokens from an inference engine; registers with the coordinator.',
    version: readPackageVersion(import.meta.url),
  });
  const options = agentOptionsFromConfig(config);
  const logger = createLogger({ service: 'titan-agent', level: config.logLevel, format: config.logFormat });
  // OpenTelemetry only when OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT is set (the SDK is not even loaded otherwise).
  const tracing = await startTracing({ serviceName: 'titan-agent', serviceVersion: readPackageVersion(import.meta.url), logger });
  if (tracing.enabled) logger.info({ endpoint: tracing.endpoint }, 'tracing: exporting spans (OTLP)');
  const agent = await startAgent({ ...options, logger }).catch((err: unknown) => {
    // A bad option combination the engine or agent found: a flag error (exit 2, one line), not a crash.
    if (err instanceof AgentConfigError) {
      const option = typeof err.context.option === 'string' ? err.context.option : 'options';
      throw new ConfigError(err.message, { option, source: 'command line', expected: 'a valid agent configuration' }, { cause: err });
    }
    throw err;
  });
  onShutdownSignal((signal) => agent.stop(signal));
  const reason = await agent.closed;
  await tracing.shutdown();
  logger.info({ reason }, 'exiting');
  process.exit(0);
}, 'titan-agent');

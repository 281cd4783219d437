#!/usr/bin/env node
import { createLogger, loadConfig, onShutdownSignal, runMain, serverTlsFromConfig, ConfigError } from '@titancompute/server-kit';
import { coordinatorConfigSpec } from './config.js';
import { startCoordinator } from './coordinator.js';
import { rotateKeyring } from './tokens/keyring.js';

const NAME = 'titan-coordinator';
const SUMMARY =
  'TitanCompute coordinator: registers agents, schedules inference requests and signs session tokens. ' +
  'Subcommand: `titan-coordinator rotate-key --data-dir D` writes a new signing key (old public keys stay published until their tokens expire).';

runMain(async () => {
  const config = loadConfig(coordinatorConfigSpec(), { name: NAME, summary: SUMMARY, allowPositionals: true });
  const [command, ...rest] = config.positionals;
  if (command === 'rotate-key') {
    if (rest.length > 0) throw new ConfigError(`unexpected arguments after rotate-key: ${rest.join(' ')}`, { option: 'arguments', source: 'command line', expected: 'rotate-key [options]' });
    const { kid, previousKid } = await rotateKeyring({ dataDir: config.dataDir, tokenTtlMs: config.tokenTtlMs });
    process.stdout.write(JSON.stringify({ msg: 'rotated signing key', kid, previousKid: previousKid ?? null, dataDir: config.dataDir }) + '\n');
    return;
  }
  if (command !== undefined) {
    throw new ConfigError(`unknown command "${command}"`, { option: 'command', source: 'command line', expected: 'no command, or rotate-key', got: command });
  }
  const logger = createLogger({ service: NAME, level: config.logLevel });
  const coordinator = await startCoordinator({
    host: config.host,
    port: config.port,
    httpPort: config.httpPort,
    dataDir: config.dataDir,
    joinToken: config.joinToken,
    heartbeatTimeoutMs: config.heartbeatTimeoutMs,
    heartbeatIntervalMs: config.heartbeatIntervalMs,
    tokenTtlMs: config.tokenTtlMs,
    claimWindowMs: config.claimWindowMs,
    maxClientShare: config.maxClientShare,
    issuer: config.issuer,
    maxTokensLimit: config.maxTokensLimit,
    maxPromptBytes: config.maxPromptBytes,
    allowedModels: config.allowedModels,
    weights: { memory: config.weightMemory, load: config.weightLoad, rtt: config.weightRtt, performance: config.weightPerformance },
    breaker: { failureThreshold: config.breakerFailures, openDurationMs: config.breakerOpenMs, successThreshold: config.breakerSuccesses },
    protoVersionPolicy: config.protoVersionPolicy,
    shutdownTimeoutMs: config.shutdownTimeoutMs,
    tls: serverTlsFromConfig(config),
    logger,
  });
  process.on('SIGHUP', () => {
    void coordinator.reloadKeys().then((changed) => logger.info({ changed }, 'keyring reloaded (SIGHUP)'));
  });
  onShutdownSignal(async (signal) => {
    logger.info({ signal }, 'shutting down');
    await coordinator.stop();
    process.exit(0);
  });
}, NAME);

#!/usr/bin/env node
import { clientTlsFromConfig, createLogger, loadConfig, onShutdownSignal, readPackageVersion, runMain, serverTlsFromConfig, ConfigError } from '@titancompute/server-kit';
import { coordinatorConfigSpec } from './config.js';
import { startCoordinator } from './coordinator.js';
import { AGENT_ID_PATTERN } from './identity/agent-messages.js';
import { openIdentityStore } from './identity/identity-store.js';
import { rotateKeyring } from './tokens/keyring.js';

const NAME = 'titan-coordinator';
const SUMMARY =
  'TitanCompute coordinator: registers agents, schedules inference requests and signs session tokens. ' +
  'Subcommands: `titan-coordinator rotate-key --data-dir D` writes a new signing key (old public keys stay published until their tokens expire); ' +
  '`titan-coordinator forget-agent ID --data-dir D` releases an agent id bound to an agent\'s credential (replacing an agent machine; exit 1 when the id was not bound).';

runMain(async () => {
  const config = loadConfig(coordinatorConfigSpec(), { name: NAME, summary: SUMMARY, allowPositionals: true, version: readPackageVersion(import.meta.url) });
  const [command, ...rest] = config.positionals;
  if (command === 'rotate-key') {
    if (rest.length > 0) throw new ConfigError(`unexpected arguments after rotate-key: ${rest.join(' ')}`, { option: 'arguments', source: 'command line', expected: 'rotate-key [options]' });
    const { kid, previousKid } = await rotateKeyring({ dataDir: config.dataDir, tokenTtlMs: config.tokenTtlMs });
    process.stdout.write(JSON.stringify({ msg: 'rotated signing key', kid, previousKid: previousKid ?? null, dataDir: config.dataDir }) + '\n');
    return;
  }
  if (command === 'forget-agent') {
    const [agentId, ...extra] = rest;
    if (agentId === undefined || extra.length > 0 || !AGENT_ID_PATTERN.test(agentId)) {
      throw new ConfigError(`forget-agent needs exactly one agent id (1-128 characters of A-Z a-z 0-9 . _ : -), got: ${rest.join(' ') || 'nothing'}`, {
        option: 'arguments', source: 'command line', expected: 'forget-agent ID [options]', got: rest.join(' '),
      });
    }
    const store = openIdentityStore({ dataDir: config.dataDir });
    try {
      const forgotten = store.forget(agentId);
      process.stdout.write(
        JSON.stringify({
          msg: forgotten ? 'agent id released: the next agent registering with it binds its own credential' : 'agent id was not bound',
          agentId,
          forgotten,
          file: store.file,
        }) + '\n',
      );
      if (!forgotten) process.exitCode = 1;
    } finally {
      store.close();
    }
    return;
  }
  if (command !== undefined) {
    throw new ConfigError(`unknown command "${command}"`, { option: 'command', source: 'command line', expected: 'no command, rotate-key or forget-agent', got: command });
  }
  const logger = createLogger({ service: NAME, level: config.logLevel, format: config.logFormat });
  const coordinator = await startCoordinator({
    host: config.host,
    port: config.port,
    httpPort: config.httpPort,
    httpRequestTimeoutMs: config.httpRequestTimeoutMs,
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
    clientTls: clientTlsFromConfig(config),
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

import { describe, expect, it } from '@jest/globals';
import { COMMON_DEFAULTS, loadConfig } from '@titancompute/server-kit';
import { AGENT_DEFAULTS, agentConfigSpec, agentOptionsFromConfig, startAgentOptionsSchema } from './config.js';

const load = (argv: string[], env: Record<string, string> = {}) => loadConfig(agentConfigSpec(), { name: 'titan-agent', argv, env });

describe('titan-agent config', () => {
  it('shows the defaults of AGENT_DEFAULTS in --help, in the form the flags parse', () => {
    const spec = agentConfigSpec();
    const shown = Object.fromEntries(
      (
        [
          'port',
          'host',
          'coordinator',
          'engine',
          'engineTimeoutMs',
          'heartbeatIntervalMs',
          'imHealthIntervalMs',
          'drainTimeoutMs',
          'maxConcurrentJobs',
          'maxPromptBytes',
          'maxTokensLimit',
          'protoVersionPolicy',
          'logLevel',
          'shutdownTimeoutMs',
        ] as const
      ).map((key) => [key, spec[key].default]),
    );
    expect(shown).toEqual({
      port: '50052',
      host: '0.0.0.0',
      coordinator: 'localhost:50051',
      engine: 'llama-cpp',
      engineTimeoutMs: '60s',
      heartbeatIntervalMs: '2s',
      imHealthIntervalMs: '5s',
      drainTimeoutMs: '30s',
      maxConcurrentJobs: '4',
      maxPromptBytes: '32768',
      maxTokensLimit: '4096',
      protoVersionPolicy: 'strict',
      logLevel: 'info',
      shutdownTimeoutMs: '10s',
    });
  });

  it('gives startAgent the same defaults as the flags (one source: AGENT_DEFAULTS, common ones from COMMON_DEFAULTS)', () => {
    const fromFlags = agentOptionsFromConfig(load(['--join-token', 't']));
    const programmatic = startAgentOptionsSchema.parse({ joinToken: 't' });
    expect(startAgentOptionsSchema.parse(fromFlags)).toEqual(programmatic);
    const D = AGENT_DEFAULTS;
    expect(programmatic).toMatchObject({
      host: COMMON_DEFAULTS.host,
      port: D.port,
      coordinator: D.coordinator,
      engine: D.engine,
      maxConcurrentJobs: D.maxConcurrentJobs,
      maxQueue: D.queuedJobsPerSlot * D.maxConcurrentJobs,
      heartbeatIntervalMs: D.heartbeatIntervalMs,
      imHealthIntervalMs: D.imHealthIntervalMs,
      drainTimeoutMs: D.drainTimeoutMs,
      maxPromptBytes: D.maxPromptBytes,
      maxTokensLimit: D.maxTokensLimit,
      protoVersionPolicy: COMMON_DEFAULTS.protoVersionPolicy,
      logLevel: COMMON_DEFAULTS.logLevel,
    });
    expect(fromFlags).toMatchObject({
      engineIdleTimeoutMs: D.engineIdleTimeoutMs,
      ollamaHost: D.ollamaHost,
      openaiApi: D.openaiApi,
      nvidiaSmiPath: D.nvidiaSmiPath,
    });
  });
});

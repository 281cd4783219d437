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

  it('the HTTP port is the gRPC port + 10 unless set (0 follows 0); --http-port / TITAN_HTTP_PORT / AGENT_HTTP_PORT and --http-endpoint set it', () => {
    const parse = (argv: string[], env: Record<string, string> = {}) =>
      startAgentOptionsSchema.parse(agentOptionsFromConfig(load(['--join-token', 't', ...argv], env)));
    expect(parse([])).toMatchObject({ port: 50052, httpPort: 50062 });
    expect(parse(['--port', '6000'])).toMatchObject({ httpPort: 6010 });
    expect(parse(['--port', '0'])).toMatchObject({ httpPort: 0 });
    expect(parse(['--port', '65530'])).toMatchObject({ httpPort: 0 });
    expect(parse(['--port', '0', '--http-port', '8000'])).toMatchObject({ httpPort: 8000 });
    expect(parse([], { AGENT_HTTP_PORT: '7001' })).toMatchObject({ httpPort: 7001 });
    expect(parse(['--http-port', '0'], { TITAN_HTTP_PORT: '7000' })).toMatchObject({ httpPort: 0 });
    expect(parse(['--http-endpoint', 'gpu-1.example:443'])).toMatchObject({ httpEndpoint: 'gpu-1.example:443' });
    expect(() => load(['--http-port', '70000'])).toThrow(/--http-port.*expected an integer from 0 to 65535, got "70000"/);
    expect(startAgentOptionsSchema.safeParse({ joinToken: 't', httpEndpoint: 'http://gpu-1:8000' }).success).toBe(false);
    expect(startAgentOptionsSchema.parse({ joinToken: 't', httpEndpoint: '[::1]:8000' })).toMatchObject({ httpEndpoint: '[::1]:8000' });
  });

  it('--context-size / TITAN_CONTEXT_SIZE sets the llama.cpp context per sequence; 0 (default) leaves it to the engine', () => {
    const opts = (argv: string[], env: Record<string, string> = {}) => agentOptionsFromConfig(load(['--join-token', 't', ...argv], env));
    expect(opts([]).contextSize).toBeUndefined();
    expect(opts(['--context-size', '4096']).contextSize).toBe(4096);
    expect(opts([], { TITAN_CONTEXT_SIZE: '3072' }).contextSize).toBe(3072);
    expect(() => load(['--context-size', '-1'])).toThrow(/context-size/);
  });

  it('--coordinator / TITAN_COORDINATOR takes one host:port or several comma-separated; a bad entry is a ConfigError naming the flag', () => {
    const opts = (argv: string[], env: Record<string, string> = {}) => agentOptionsFromConfig(load(['--join-token', 't', ...argv], env));
    expect(opts(['--coordinator', 'c1:50051']).coordinator).toBe('c1:50051');
    expect(opts([], { TITAN_COORDINATOR: 'c1:50051,c2:50051,c3:50051' }).coordinator).toBe('c1:50051,c2:50051,c3:50051');
    expect(() => opts(['--coordinator', 'c1:50051,c2'])).toThrow(
      /^invalid --coordinator \(TITAN_COORDINATOR\): expected host:port, or several comma-separated, got "c1:50051,c2"$/,
    );
  });

  it('--metrics-port / TITAN_METRICS_PORT: unset or the HTTP port serves /metrics on the HTTP server; another port (0 too) a listener of its own', () => {
    const parse = (argv: string[], env: Record<string, string> = {}) =>
      startAgentOptionsSchema.parse(agentOptionsFromConfig(load(['--join-token', 't', ...argv], env)));
    expect(parse([]).metricsPort).toBeUndefined();
    expect(parse(['--metrics-port', '50062']).metricsPort).toBeUndefined();
    expect(parse(['--metrics-port', '9400'])).toMatchObject({ metricsPort: 9400, httpPort: 50062 });
    expect(parse([], { TITAN_METRICS_PORT: '9401' })).toMatchObject({ metricsPort: 9401 });
    expect(parse(['--port', '0', '--metrics-port', '0'])).toMatchObject({ httpPort: 0, metricsPort: 0 });
    expect(() => load(['--metrics-port', 'x'])).toThrow(/--metrics-port.*expected an integer from 0 to 65535/);
  });
});

import { describe, expect, it } from '@jest/globals';
import { ConfigError, EXIT_USAGE, loadConfig } from '@titancompute/server-kit';
import { COORDINATOR_DEFAULTS, coordinatorConfigSpec, coordinatorOptionsFromConfig, resolveCoordinatorOptions } from './config.js';

const load = (argv: string[], env: Record<string, string> = {}) =>
  loadConfig(coordinatorConfigSpec(), { name: 'titan-coordinator', argv, env, allowPositionals: true });

describe('titan-coordinator config', () => {
  it('has the documented defaults', () => {
    const c = load([]);
    expect(c).toMatchObject({
      port: 50051,
      httpPort: 8080,
      heartbeatTimeoutMs: 30_000,
      heartbeatIntervalMs: 2_000,
      tokenTtlMs: 300_000,
      issuer: 'titancompute-coordinator',
      maxTokensLimit: 4096,
      maxPromptBytes: 32768,
      allowedModels: [],
      weightMemory: 0.4,
      weightLoad: 0.3,
      weightRtt: 0.2,
      weightPerformance: 0.1,
      breakerFailures: 3,
      breakerOpenMs: 30_000,
      breakerSuccesses: 2,
    });
    expect(c.joinToken).toBeUndefined();
  });

  it("keeps v1's environment variables working", () => {
    const c = load([], { COORDINATOR_PORT: '6000', COORDINATOR_HTTP_PORT: '6001', HEARTBEAT_TIMEOUT: '45s', TOKEN_TTL: '10m', TITAN_JOIN_TOKEN: 'secret' });
    expect(c).toMatchObject({ port: 6000, httpPort: 6001, heartbeatTimeoutMs: 45_000, tokenTtlMs: 600_000, joinToken: 'secret' });
    expect(load(['--heartbeat-timeout', '600ms', '--allowed-models', 'a, b']).heartbeatTimeoutMs).toBe(600);
  });

  it('rejects bad values with a ConfigError naming the option (the bin exits 2)', () => {
    for (const argv of [['--port', 'abc'], ['--heartbeat-timeout', 'soon'], ['--max-tokens-limit', '0'], ['--weight-rtt', '-1'], ['--bogus']]) {
      expect(() => load(argv)).toThrow(ConfigError);
    }
    expect(() => load([], { TOKEN_TTL: 'forever' })).toThrow(/TOKEN_TTL/);
    expect(EXIT_USAGE).toBe(2);
  });

  it('gives startCoordinator the same defaults as the flags (one source: COORDINATOR_DEFAULTS)', () => {
    const fromFlags = coordinatorOptionsFromConfig(load([]));
    const programmatic = resolveCoordinatorOptions({ dataDir: fromFlags.dataDir });
    const { weights, breaker, tls, clientTls, joinToken, adminToken, instanceManager, ...rest } = fromFlags;
    expect(programmatic).toMatchObject(rest);
    expect(weights).toEqual(COORDINATOR_DEFAULTS.weights);
    expect(breaker).toEqual(COORDINATOR_DEFAULTS.breaker);
    expect([tls, clientTls, joinToken, adminToken, instanceManager]).toEqual([undefined, undefined, undefined, undefined, undefined]);
  });

  it('--auth takes auto (default), none or keys; --admin-token and TITAN_ADMIN_TOKEN set the admin credential', () => {
    expect(coordinatorOptionsFromConfig(load([])).auth).toBe('auto');
    expect(coordinatorOptionsFromConfig(load(['--auth', 'keys'])).auth).toBe('keys');
    expect(coordinatorOptionsFromConfig(load([], { TITAN_AUTH: 'none' })).auth).toBe('none');
    expect(() => load(['--auth', 'maybe'])).toThrow(/auth/);
    expect(coordinatorOptionsFromConfig(load(['--admin-token', 'a-secret'])).adminToken).toBe('a-secret');
    expect(coordinatorOptionsFromConfig(load([], { TITAN_ADMIN_TOKEN: 'from-env' })).adminToken).toBe('from-env');
  });

  it('--prefix-routing takes approximate (default), precise or off', () => {
    expect(coordinatorOptionsFromConfig(load([])).prefixRouting).toBe('approximate');
    expect(coordinatorOptionsFromConfig(load(['--prefix-routing', 'precise'])).prefixRouting).toBe('precise');
    expect(coordinatorOptionsFromConfig(load([], { TITAN_PREFIX_ROUTING: 'off' })).prefixRouting).toBe('off');
    expect(() => load(['--prefix-routing', 'exact'])).toThrow(/prefix-routing/);
  });

  it('--store: sqlite by default; postgres needs --postgres-url and a 32-byte keyring secret, else a usage error (exit 2) naming them', () => {
    expect(coordinatorOptionsFromConfig(load([])).store).toBe('sqlite');
    const secret = Buffer.alloc(32, 7).toString('base64');
    const url = 'postgres://titan@db:5432/titan';
    expect(coordinatorOptionsFromConfig(load(['--store', 'postgres', '--postgres-url', url], { TITAN_KEYRING_SECRET: secret }))).toMatchObject({
      store: 'postgres',
      postgresUrl: url,
      keyringSecret: secret,
    });
    expect(coordinatorOptionsFromConfig(load([], { TITAN_STORE: 'postgres', TITAN_POSTGRES_URL: url, TITAN_KEYRING_SECRET: secret })).postgresUrl).toBe(url);
    expect(() => coordinatorOptionsFromConfig(load(['--store', 'postgres'], { TITAN_KEYRING_SECRET: secret }))).toThrow(ConfigError);
    expect(() => coordinatorOptionsFromConfig(load(['--store', 'postgres'], { TITAN_KEYRING_SECRET: secret }))).toThrow(
      /--store postgres needs --postgres-url \(TITAN_POSTGRES_URL\)/,
    );
    expect(() => coordinatorOptionsFromConfig(load(['--store', 'postgres', '--postgres-url', url]))).toThrow(
      /TITAN_KEYRING_SECRET\) is required with --store postgres/,
    );
    expect(() => coordinatorOptionsFromConfig(load(['--store', 'postgres', '--postgres-url', url], { TITAN_KEYRING_SECRET: 'hunter2' }))).toThrow(
      /is not 32 bytes in base64 or hex/,
    );
    expect(() => load(['--store', 'mysql'])).toThrow(/store/);
  });

  it('treats options given as undefined as absent, and keeps the ones given', () => {
    const o = resolveCoordinatorOptions({ dataDir: 'd', port: undefined, claimWindowMs: undefined, httpPort: 0, verifyAgentEndpoints: false });
    expect(o).toMatchObject({ port: 50051, claimWindowMs: 10_000, httpPort: 0, verifyAgentEndpoints: false, busyRetryHintMs: 250, keyReloadIntervalMs: 1000 });
  });

  it('shows duration defaults in the largest whole unit in --help (derived from COORDINATOR_DEFAULTS)', () => {
    const spec = coordinatorConfigSpec();
    const shown = [
      spec.tokenTtlMs,
      spec.heartbeatTimeoutMs,
      spec.heartbeatIntervalMs,
      spec.claimWindowMs,
      spec.httpRequestTimeoutMs,
      spec.breakerOpenMs,
      spec.shutdownTimeoutMs,
    ].map((o) => o.default);
    expect(shown).toEqual(['5m', '30s', '2s', '10s', '30s', '30s', '10s']);
    expect([spec.host.default, spec.port.default, spec.logLevel.default, spec.protoVersionPolicy.default]).toEqual(['0.0.0.0', '50051', 'info', 'strict']);
  });
});

import { execFile } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from '@jest/globals';
import { COMMON_DEFAULTS, commonOptions, defaultDataDir, durationOption, formatDuration, listOption, loadConfig, parseDurationMs } from './config.js';
import { ConfigError, HelpRequested } from './errors.js';

const spec = {
  ...commonOptions({ service: 'coordinator', port: 50051, portEnv: ['COORDINATOR_PORT'] }),
  heartbeatTimeoutMs: durationOption({
    flag: 'heartbeat-timeout',
    env: ['TITAN_HEARTBEAT_TIMEOUT', 'HEARTBEAT_TIMEOUT'],
    default: '30s',
    description: 'Evict agents silent this long.',
  }),
  models: listOption({ flag: 'supported-models', env: ['SUPPORTED_MODELS'], description: 'Models.' }),
};

const load = (argv: string[], env: Record<string, string> = {}) => loadConfig(spec, { argv, env, name: 'titan-test' });

function configError(fn: () => unknown): ConfigError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return err as ConfigError;
  }
  throw new Error('expected a ConfigError');
}

describe('loadConfig', () => {
  it('applies defaults', () => {
    const config = load([]);
    expect(config).toMatchObject({
      port: 50051,
      host: '0.0.0.0',
      dataDir: './.titan/coordinator',
      logLevel: 'info',
      protoVersionPolicy: 'strict',
      heartbeatTimeoutMs: 30_000,
      shutdownTimeoutMs: 10_000,
      models: [],
    });
  });

  it('reads TITAN_ variables, then v1 variables, and flags win over both', () => {
    expect(load([], { COORDINATOR_PORT: '6000' }).port).toBe(6000);
    expect(load([], { COORDINATOR_PORT: '6000', TITAN_PORT: '7000' }).port).toBe(7000);
    expect(load(['--port', '8000'], { COORDINATOR_PORT: '6000', TITAN_PORT: '7000' }).port).toBe(8000);
    expect(load([], { HEARTBEAT_TIMEOUT: '5m' }).heartbeatTimeoutMs).toBe(300_000);
    expect(load([], { SUPPORTED_MODELS: 'a, b,,c' }).models).toEqual(['a', 'b', 'c']);
  });

  it('names the flag, the expected form and the value for a bad flag', () => {
    const err = configError(() => load(['--port', 'abc']));
    expect(err.message).toBe('invalid --port (--port / TITAN_PORT / COORDINATOR_PORT): expected an integer from 0 to 65535, got "abc"');
  });

  it('names the environment variable a bad value came from', () => {
    const err = configError(() => load([], { COORDINATOR_PORT: '70000' }));
    expect(err.message).toContain('environment variable COORDINATOR_PORT');
    expect(err.message).toContain('got "70000"');
    expect(err.context).toMatchObject({ option: 'port', got: '70000' });
    expect(configError(() => load([], { HEARTBEAT_TIMEOUT: 'soon' })).message).toContain('expected a duration such as 500ms, 30s, 5m or 1h');
    expect(configError(() => load(['--log-level', 'loud'])).message).toContain('expected one of fatal, error, warn, info');
    expect(configError(() => load(['--proto-version-policy', 'lax'])).message).toContain('expected one of strict, allow-missing');
  });

  it('refuses unknown flags and answers --help with the usage', () => {
    expect(configError(() => load(['--prot', '1'])).message).toBe('unknown option --prot (run titan-test --help for the options)');
    expect(configError(() => load(['--port'])).message).toBe('option --port needs a value (run titan-test --help for the options)');
    expect(() => load(['--help'])).toThrow(HelpRequested);
    expect(() => load(['-h'])).toThrow(HelpRequested);
    try {
      load(['--help']);
    } catch (err) {
      expect((err as HelpRequested).usage).toContain('--heartbeat-timeout <value>');
      expect((err as HelpRequested).usage).toContain('[env: TITAN_HEARTBEAT_TIMEOUT, HEARTBEAT_TIMEOUT]');
    }
  });

  it('parses durations like v1 configs write them', () => {
    expect(parseDurationMs('500ms')).toBe(500);
    expect(parseDurationMs('30s')).toBe(30_000);
    expect(parseDurationMs('1.5m')).toBe(90_000);
    expect(parseDurationMs('2h')).toBe(7_200_000);
    expect(parseDurationMs('45')).toBe(45_000);
    expect(parseDurationMs('-1s')).toBeUndefined();
    expect(parseDurationMs('5 minutes')).toBeUndefined();
  });

  it('formats a duration default in the largest whole unit, which the duration flags parse back', () => {
    const cases = [300_000, 30_000, 2_000, 250, 3_600_000, 90_000, 60_000, 1_500];
    expect(cases.map((ms) => formatDuration(ms))).toEqual(['5m', '30s', '2s', '250ms', '1h', '90s', '1m', '1500ms']);
    for (const ms of cases) expect(parseDurationMs(formatDuration(ms))).toBe(ms);
    expect([formatDuration(60_000, 's'), formatDuration(7_200_000, 'm'), formatDuration(250, 's'), formatDuration(2000, 'ms')]).toEqual([
      '60s',
      '120m',
      '250ms',
      '2000ms',
    ]);
  });
});

describe('COMMON_DEFAULTS', () => {
  it('are the defaults the common options show and apply (one source)', () => {
    const common = commonOptions({ service: 'agent', port: 50052 });
    expect(loadConfig(common, { argv: [], env: {}, name: 'titan-agent' })).toMatchObject({ ...COMMON_DEFAULTS, port: 50052, dataDir: defaultDataDir('agent') });
    expect([
      common.host.default,
      common.logLevel.default,
      common.logFormat.default,
      common.protoVersionPolicy.default,
      common.shutdownTimeoutMs.default,
      common.dataDir.default,
    ]).toEqual(['0.0.0.0', 'info', 'auto', 'strict', '10s', './.titan/agent']);
    expect(Object.isFrozen(COMMON_DEFAULTS)).toBe(true);
  });
});

describe('runMain', () => {
  const serverKit = fileURLToPath(new URL('../dist/index.js', import.meta.url));
  const script = `
    import { runMain, loadConfig, commonOptions } from ${JSON.stringify(serverKit)};
    runMain(async () => {
      const c = loadConfig(commonOptions({ service: 'x', port: 1 }), { name: 'titan-x' });
      process.stdout.write('port=' + c.port + '\\n');
    }, 'titan-x');
  `;
  const bin = join(mkdtempSync(join(tmpdir(), 'titan-bin-')), 'bin.mjs');
  writeFileSync(bin, script);
  const runScript = (args: string[], env: Record<string, string> = {}) =>
    new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
      execFile(process.execPath, [bin, ...args], { env: { ...process.env, ...env } }, (error, stdout, stderr) =>
        resolve({ code: error ? (error.code as number) : 0, stdout, stderr }),
      );
    });

  it('exits 2 with the message for a bad value, 0 for --help, and runs otherwise', async () => {
    const bad = await runScript([], { TITAN_PORT: 'eighty' });
    expect(bad.code).toBe(2);
    expect(bad.stderr).toBe('titan-x: invalid environment variable TITAN_PORT (--port / TITAN_PORT): expected an integer from 0 to 65535, got "eighty"\n');
    const help = await runScript(['--help']);
    expect(help.code).toBe(0);
    expect(help.stdout).toContain('Usage: titan-x [options]');
    const ok = await runScript(['--port', '9']);
    expect(ok).toMatchObject({ code: 0, stdout: 'port=9\n' });
  });
});

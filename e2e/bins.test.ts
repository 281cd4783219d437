/**
 * The service bins as a person runs them (through the committed launchers in each package's
 * `bin/`, which pnpm links): `-h` and `--version` work, every flag error is one clean line with
 * exit 2 (no stack, no parser text), and logs are readable lines on a terminal or with
 * `--log-format pretty`, JSON otherwise. Needs a build (`pnpm build`).
 */
import { execFile, spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from '@jest/globals';
import { repoRoot } from './support.js';

/** Each bin as package.json declares it. */
const BIN_FILES = {
  'titan-coordinator': 'packages/coordinator',
  'titan-agent': 'packages/agent',
  'titan-instance-manager': 'packages/instance-manager',
  'titan-healthcheck': 'packages/server-kit',
} as const;
type BinName = keyof typeof BIN_FILES;

function binPath(name: BinName): string {
  const dir = join(repoRoot, BIN_FILES[name]);
  const manifest = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { bin: Record<string, string>; version: string };
  return join(dir, manifest.bin[name]!);
}

function version(name: BinName): string {
  return (JSON.parse(readFileSync(join(repoRoot, BIN_FILES[name], 'package.json'), 'utf8')) as { version: string }).version;
}

function runBin(name: BinName, args: string[], env: Record<string, string> = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [binPath(name), ...args],
      { cwd: repoRoot, env: { ...process.env, TITAN_JOIN_TOKEN: '', ...env }, timeout: 30_000 },
      (error, stdout, stderr) => resolve({ code: error ? Number((error as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    );
  });
}

/** One line on stderr, starting with the bin's name, with no stack trace or Node parser text. */
function expectOneCleanLine(name: BinName, stderr: string): void {
  expect(stderr.endsWith('\n')).toBe(true);
  expect(stderr.trimEnd().split('\n')).toHaveLength(1);
  expect(stderr.startsWith(`${name}: `)).toBe(true);
  expect(stderr).not.toMatch(/\n\s+at |To specify a positional|ERR_PARSE_ARGS/);
}

const ALL: BinName[] = ['titan-coordinator', 'titan-agent', 'titan-instance-manager', 'titan-healthcheck'];

describe('service bins', () => {
  it('each package declares its bin as a committed launcher (so one pnpm install links it)', () => {
    for (const name of ALL) {
      const file = binPath(name);
      expect(file).not.toContain('/dist/');
      expect(existsSync(file)).toBe(true);
    }
  });

  it.each(ALL)('%s: -h and --help print usage, --version prints the version; both exit 0', async (name) => {
    for (const flag of ['-h', '--help']) {
      const help = await runBin(name, [flag]);
      expect(help).toMatchObject({ code: 0, stderr: '' });
      expect(help.stdout).toContain(`Usage: ${name}`);
      expect(help.stdout).toContain('--version');
    }
    const v = await runBin(name, ['--version']);
    expect(v).toEqual({ code: 0, stdout: `${name} ${version(name)}\n`, stderr: '' });
  });

  it.each(ALL)('%s: an unknown flag exits 2 with one line naming it', async (name) => {
    const r = await runBin(name, ['--no-such-flag']);
    expect(r.code).toBe(2);
    expectOneCleanLine(name, r.stderr);
    expect(r.stderr).toContain('unknown option --no-such-flag');
  });

  it('a flag without its value exits 2 with one line naming the flag', async () => {
    const r = await runBin('titan-coordinator', ['--port']);
    expect(r.code).toBe(2);
    expectOneCleanLine('titan-coordinator', r.stderr);
    expect(r.stderr).toContain('option --port needs a value');
  });

  it('titan-agent --engine openai without --openai-url exits 2 with one line naming --openai-url', async () => {
    const r = await runBin('titan-agent', ['--engine', 'openai', '--join-token', 'x'.repeat(32), '--port', '0']);
    expect(r.code).toBe(2);
    expectOneCleanLine('titan-agent', r.stderr);
    expect(r.stderr).toContain('--openai-url');
  });

  it('titan-agent with a GGUF file that does not exist exits 2 with one line naming --model and the path', async () => {
    const r = await runBin('titan-agent', ['--model', '/nonexistent/model.gguf', '--join-token', 'x'.repeat(32), '--port', '0']);
    expect(r.code).toBe(2);
    expectOneCleanLine('titan-agent', r.stderr);
    expect(r.stderr).toContain('--model');
    expect(r.stderr).toContain('/nonexistent/model.gguf');
  });

  it('titan-healthcheck with a malformed address exits 2 with one line', async () => {
    const r = await runBin('titan-healthcheck', ['not-an-address']);
    expect(r.code).toBe(2);
    expectOneCleanLine('titan-healthcheck', r.stderr);
    expect(r.stderr).toContain('"not-an-address"');
  });
});

/** Runs the instance manager until its "listening" log shows up in `read()`, then stops it. */
async function logsUntilListening(command: string, args: string[], env: Record<string, string>): Promise<string> {
  const child = spawn(command, args, { cwd: repoRoot, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise((resolve) => child.on('exit', resolve));
  const deadline = Date.now() + 30_000;
  while (!/listening/.test(out) && Date.now() < deadline && child.exitCode === null) await new Promise((r) => setTimeout(r, 100));
  child.kill('SIGTERM');
  await exited;
  return out;
}

describe('service logs', () => {
  const im = () => binPath('titan-instance-manager');
  const imArgs = ['--storage', 'memory', '--port', '0', '--host', '127.0.0.1'];

  it('are JSON lines when stdout is not a terminal (format auto)', async () => {
    const out = await logsUntilListening(process.execPath, [im(), ...imArgs], { TITAN_LOG_FORMAT: '' });
    const listening = out.split('\n').find((l) => l.includes('listening'))!;
    expect(JSON.parse(listening)).toMatchObject({ msg: 'listening', service: 'titan-instance-manager' });
  });

  it('are readable lines with --log-format pretty (and TITAN_LOG_FORMAT=pretty)', async () => {
    for (const [args, env] of [
      [['--log-format', 'pretty'], {}],
      [[], { TITAN_LOG_FORMAT: 'pretty' }],
    ] as const) {
      const out = await logsUntilListening(process.execPath, [im(), ...imArgs, ...args], env);
      const listening = out.split('\n').find((l) => l.includes('listening'))!;
      expect(() => JSON.parse(listening)).toThrow();
      expect(listening).toMatch(/^\[\d\d:\d\d:\d\d\.\d{3}\] INFO: titan-instance-manager: listening/);
    }
  });

  it('are readable lines on a terminal (format auto under a pty)', async () => {
    const command = `${process.execPath} ${im()} ${imArgs.join(' ')}`;
    // `script` gives the bin a pseudo-terminal as stdout.
    const out = await logsUntilListening('script', ['-qec', command, '/dev/null'], { TITAN_LOG_FORMAT: '' });
    const listening = out.split(/\r?\n/).find((l) => l.includes('listening'))!;
    // eslint-disable-next-line no-control-regex
    // biome-ignore lint/suspicious/noControlCharactersInRegex: strips ANSI colour codes (ESC [ … m)
    const plain = listening.replace(/\u001b\[[0-9;]*m/g, '');
    expect(plain).toMatch(/INFO.*: titan-instance-manager: listening/);
    expect(() => JSON.parse(plain)).toThrow();
  });

  it('an invalid --log-format exits 2 naming the choices', async () => {
    const r = await runBin('titan-instance-manager', ['--log-format', 'xml']);
    expect(r.code).toBe(2);
    expectOneCleanLine('titan-instance-manager', r.stderr);
    expect(r.stderr).toContain('expected one of auto, json, pretty, got "xml"');
  });
});

/**
 * Runs the built `titan` CLI under real pseudo-terminals, the way a person runs it:
 * - {@link startTmuxTerminal}: a tmux pane of a fixed size; read the screen with `screen()`,
 *   type with `keys()`, signal the CLI with `kill()`, and read its exit status.
 * - {@link startZeroWidthTerminal}: `script -qec` with stdin not a terminal, which gives a pty
 *   that reports 0 columns and 0 rows (a "terminal without a usable width").
 *
 * Needs the Debian packages `tmux` and `bsdutils` (`script`), and `pnpm build` (the CLI runs
 * from `packages/client/dist/cli/bin.js`). When one is missing the tests fail with a message
 * saying what to install; they never skip.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { constants, tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { waitFor as pollUntil } from '@titancompute/test-support/wait-for';

/** The CLI entry point: the built one, or `TITAN_CLI_BIN` (e.g. to run the tests against another build). */
export const CLI_BIN = process.env.TITAN_CLI_BIN
  ? resolve(process.env.TITAN_CLI_BIN)
  : resolve(dirname(fileURLToPath(import.meta.url)), '../../dist/cli/bin.js');

/** Throws a clear error when the terminal tests cannot run here (no tmux/script, CLI not built). */
export function requireTerminalTools(): void {
  for (const [tool, args, pkg] of [
    ['tmux', ['-V'], 'tmux'],
    ['script', ['--version'], 'bsdutils'],
  ] as const) {
    const r = spawnSync(tool, args, { encoding: 'utf8' });
    if (r.error || r.status !== 0) {
      throw new Error(
        `the terminal tests need \`${tool}\` (Debian package ${pkg}: apt-get install -y ${pkg}); running it failed: ${r.error?.message ?? r.stderr}`,
      );
    }
  }
  if (!existsSync(CLI_BIN)) throw new Error(`the terminal tests run the built CLI ${CLI_BIN}: run \`pnpm build\` first`);
}

/** Environment for the CLI: like a person's terminal (no CI variable, which turns ora's spinner off). */
function terminalEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, ...extra };
  delete env.CI;
  delete env.TMUX;
  delete env.NODE_OPTIONS; // jest's --experimental-vm-modules is not the CLI's business
  return env;
}

/** Polls `check` every 50 ms until it returns a value other than undefined/false, or fails after `timeoutMs` with `what` (test-support's `waitFor`, `what` first). */
export async function waitFor<T>(what: string, check: () => T | undefined | false | Promise<T | undefined | false>, timeoutMs = 20_000): Promise<T> {
  return (await pollUntil(check, timeoutMs, what, { intervalMs: 50, stopOnError: true })).value;
}

/** A tmux session running one command in one pane. */
export interface TmuxTerminal {
  /** Everything the pane showed (history and screen), wrapped lines joined, trailing blank lines removed. */
  screen(): string;
  /** Sends keys (tmux key names, e.g. `C-c`). */
  keys(...keys: string[]): void;
  /** Sends a signal to the command. */
  kill(signal: NodeJS.Signals): void;
  /** Waits for the command to end (failing after `timeoutMs`, or when a signal killed it) and returns its exit code. */
  waitForExit(timeoutMs?: number): Promise<number>;
  /** Kills the tmux server and removes its files. */
  close(): void;
}

/**
 * Runs the command in the pane and records how it ended. tmux's own `#{pane_dead_status}` is
 * unreliable (the pane can be marked dead before tmux reaps the process, and then the status
 * stays empty), so this wrapper writes `{code, signal}` to a file. It ignores the terminal's
 * signals itself: Ctrl-C in the pane is for the command.
 */
const WRAPPER = `
const { spawn } = require('node:child_process');
const { writeFileSync } = require('node:fs');
const [statusFile, pidFile, command, ...args] = process.argv.slice(2);
for (const s of ['SIGINT', 'SIGTERM', 'SIGQUIT']) process.on(s, () => {});
const child = spawn(command, args, { stdio: 'inherit' });
writeFileSync(pidFile, String(child.pid));
child.on('exit', (code, signal) => {
  writeFileSync(statusFile, JSON.stringify({ code, signal }));
  process.exit(0);
});
`;

/**
 * Starts `argv` in a new tmux server (its own socket) in a `width`×`height` pane. The pane
 * stays after the command ends (`remain-on-exit`) so its screen can be read.
 */
export function startTmuxTerminal(argv: string[], options: { width: number; height: number; env?: Record<string, string> }): TmuxTerminal {
  const dir = mkdtempSync(join(tmpdir(), 'titan-tmux-'));
  const socket = join(dir, 'socket');
  const config = join(dir, 'tmux.conf');
  const wrapper = join(dir, 'run.cjs');
  const statusFile = join(dir, 'status.json');
  const pidFile = join(dir, 'pid');
  writeFileSync(config, 'set -g remain-on-exit on\nset -g history-limit 10000\nset -g status off\n');
  writeFileSync(wrapper, WRAPPER);
  const env = terminalEnv(options.env);
  const tmux = (...args: string[]) => {
    const r = spawnSync('tmux', ['-S', socket, '-f', config, ...args], { encoding: 'utf8', env });
    if (r.status !== 0) throw new Error(`tmux ${args.join(' ')} failed: ${r.stderr}`);
    return r.stdout;
  };
  tmux(
    'new-session',
    '-d',
    '-s',
    'titan',
    '-x',
    String(options.width),
    '-y',
    String(options.height),
    '--',
    process.execPath,
    wrapper,
    statusFile,
    pidFile,
    ...argv,
  );
  const terminal: TmuxTerminal = {
    // From the start of the history (tmux may scroll the pane when it marks it dead), without
    // remain-on-exit's "Pane is dead" line.
    screen: () =>
      tmux('capture-pane', '-p', '-J', '-S', '-', '-t', 'titan')
        .replace(/\n?Pane is dead \([^)]*\)\s*$/, '')
        .replace(/\s+$/, ''),
    keys: (...keys) => void tmux('send-keys', '-t', 'titan', ...keys),
    kill(signal) {
      if (!existsSync(pidFile)) throw new Error('the command in tmux has not started');
      process.kill(Number(readFileSync(pidFile, 'utf8')), signal);
    },
    async waitForExit(timeoutMs = 20_000) {
      const status = await waitFor(
        'the CLI in tmux to exit',
        () => (existsSync(statusFile) ? (JSON.parse(readFileSync(statusFile, 'utf8')) as { code: number | null; signal: string | null }) : undefined),
        timeoutMs,
      );
      if (status.code === null) throw new Error(`the CLI was killed by ${status.signal} instead of exiting; screen:\n${terminal.screen()}`);
      return status.code;
    },
    close() {
      spawnSync('tmux', ['-S', socket, 'kill-server'], { env });
      rmSync(dir, { recursive: true, force: true });
    },
  };
  return terminal;
}

/** A command running under `script` in a pty that reports 0 columns. */
export interface ZeroWidthTerminal {
  /** Everything the command wrote to the terminal so far (raw, with escape sequences). */
  output(): string;
  /** The `script` process. */
  readonly child: ChildProcess;
  /** Sends a signal to the command itself (not to `script`). */
  kill(signal: NodeJS.Signals): void;
  /** Waits for `script` to end (it exits with the command's status, `-e`); fails after `timeoutMs`. */
  waitForExit(timeoutMs?: number): Promise<number>;
  /** Kills whatever still runs (the command first, then `script`). */
  close(): void;
}

function shellQuote(arg: string): string {
  return `'${arg.replace(/'/g, `'\\''`)}'`;
}

/**
 * Starts `argv` under `script -qec … /dev/null` with stdin a pipe, so the pty is never given a
 * size: the command sees a TTY with 0 columns (what `script -qc` does in many CI shells).
 */
export function startZeroWidthTerminal(argv: string[], options: { env?: Record<string, string> } = {}): ZeroWidthTerminal {
  const command = `exec ${argv.map(shellQuote).join(' ')}`;
  const child = spawn('script', ['-qec', command, '/dev/null'], { env: terminalEnv(options.env), stdio: ['pipe', 'pipe', 'pipe'] });
  let out = '';
  const collect = (s: string) => {
    if (out.length < 8_000_000) out += s; // a runaway CLI (the width-0 spinner loop) writes without end
  };
  child.stdout.setEncoding('utf8').on('data', collect);
  child.stderr.setEncoding('utf8').on('data', collect);
  let exit: number | undefined;
  child.on('exit', (code, signal) => (exit = code ?? 128 + (signal ? constants.signals[signal] : 0)));
  /** The pid of the command: the only child of `script`. */
  const commandPid = (): number | undefined => {
    try {
      const children = readFileSync(`/proc/${child.pid}/task/${child.pid}/children`, 'utf8').trim();
      return children ? Number(children.split(/\s+/)[0]) : undefined;
    } catch {
      return undefined;
    }
  };
  return {
    child,
    output: () => out,
    kill(signal) {
      const pid = commandPid();
      if (pid === undefined) throw new Error('the command under script is not running');
      process.kill(pid, signal);
    },
    async waitForExit(timeoutMs = 20_000) {
      return waitFor('the CLI under script to exit', () => exit, timeoutMs);
    },
    close() {
      if (exit !== undefined) return;
      const pid = commandPid();
      if (pid !== undefined) process.kill(pid, 'SIGKILL');
      child.kill('SIGKILL');
    },
  };
}

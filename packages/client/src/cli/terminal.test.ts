/**
 * The built `titan` CLI under real pseudo-terminals (tmux with a fixed size, and `script` with
 * a pty of width 0) against a real coordinator and agent. Needs `pnpm build`, and the Debian
 * packages tmux and bsdutils; fails (never skips) when they are missing.
 */
import { createServer, type AddressInfo, type Socket } from 'node:net';
import { afterAll, afterEach, beforeAll, describe, expect, it } from '@jest/globals';
import { EXIT } from './exit-codes.js';
import { SCRIPTED_MODEL, startRealCluster, type RealCluster } from '@titancompute/test-support';
import {
  CLI_BIN,
  requireTerminalTools,
  startTmuxTerminal,
  startZeroWidthTerminal,
  waitFor,
  type TmuxTerminal,
  type ZeroWidthTerminal,
} from '../test-support/terminal.js';

const TEST_TIMEOUT_MS = 60_000;
/** `word0 word1 … word{n-1}`: what the scripted engine streams for n tokens. */
const words = (n: number) => Array.from({ length: n }, (_, i) => `word${i}`).join(' ');

let cluster: RealCluster;
let open: Array<TmuxTerminal | ZeroWidthTerminal> = [];

beforeAll(async () => {
  requireTerminalTools();
  // 20 ms per token: a 1000-token answer lasts 20 s, long enough to interrupt it.
  cluster = await startRealCluster([{ agentId: 'agent-a', tokenDelayMs: 20 }]);
});
afterEach(() => {
  for (const t of open) t.close();
  open = [];
});
afterAll(async () => {
  await cluster?.stop();
});

function titan(...args: string[]): string[] {
  return [process.execPath, CLI_BIN, '--coordinator', cluster.coordinator.address, ...args];
}

function tmux(argv: string[]): TmuxTerminal {
  const t = startTmuxTerminal(argv, { width: 100, height: 30 });
  open.push(t);
  return t;
}

function zeroWidth(argv: string[]): ZeroWidthTerminal {
  const t = startZeroWidthTerminal(argv);
  open.push(t);
  return t;
}

/** Waits until the agent runs no job any more (the cancelled generation freed its slot). */
async function agentIdle(): Promise<void> {
  await waitFor('the agent to free the cancelled job', async () => (await cluster.client.status()).agents.every((a) => a.runningJobs === 0));
}

describe('titan generate in a 100-column terminal (tmux)', () => {
  it(
    'shows the whole streamed text, then the summary; exit 0',
    async () => {
      const t = tmux(titan('generate', '-m', SCRIPTED_MODEL, '--max-tokens', '40', 'tell', 'me'));
      expect(await t.waitForExit()).toBe(EXIT.OK);
      const screen = t.screen();
      // Every token is on screen in order (the spinner used to move the cursor back to
      // column 1 before each token, so each one overwrote the previous).
      const text = screen.indexOf(words(40));
      expect(text).toBeGreaterThanOrEqual(0);
      const summary = screen.indexOf('40 tokens · TTFT');
      expect(summary).toBeGreaterThan(text);
      expect(screen).toMatch(/40 tokens · TTFT [\d.]+ ms .* tok\/s · agent agent-a · length/);
      expect(screen).not.toContain('waiting for'); // the spinner line was cleared
    },
    TEST_TIMEOUT_MS,
  );

  it(
    'Ctrl-C cancels the generation: exit 130, "cancelled" on screen, the agent frees the slot',
    async () => {
      const t = tmux(titan('generate', '-m', SCRIPTED_MODEL, '--max-tokens', '1000', 'long', 'story'));
      await waitFor('tokens on screen', () => t.screen().includes('word3 '));
      t.keys('C-c');
      expect(await t.waitForExit()).toBe(EXIT.CANCELLED);
      expect(t.screen()).toMatch(/word3 .*\ntitan: cancelled$/s);
      expect(t.screen()).not.toContain('word999');
      await agentIdle();
    },
    TEST_TIMEOUT_MS,
  );

  it(
    'SIGTERM cancels the generation and exits 143',
    async () => {
      const t = tmux(titan('generate', '-m', SCRIPTED_MODEL, '--max-tokens', '1000', 'long', 'story'));
      await waitFor('tokens on screen', () => t.screen().includes('word3 '));
      t.kill('SIGTERM');
      expect(await t.waitForExit()).toBe(EXIT.TERMINATED);
      await agentIdle();
    },
    TEST_TIMEOUT_MS,
  );

  it(
    'SIGTERM while waiting for the first token (spinner showing) exits 143',
    async () => {
      // A "coordinator" that accepts the connection and never answers: the CLI waits, spinner up.
      const sockets = new Set<Socket>();
      const silent = createServer((socket) => void sockets.add(socket));
      await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
      try {
        const address = `127.0.0.1:${(silent.address() as AddressInfo).port}`;
        const t = tmux([process.execPath, CLI_BIN, '--coordinator', address, 'generate', '-m', SCRIPTED_MODEL, 'hi']);
        await waitFor('the spinner', () => t.screen().includes(`waiting for ${SCRIPTED_MODEL}`));
        t.kill('SIGTERM');
        expect(await t.waitForExit()).toBe(EXIT.TERMINATED);
      } finally {
        for (const socket of sockets) socket.destroy();
        await new Promise((r) => silent.close(r));
      }
    },
    TEST_TIMEOUT_MS,
  );
});

describe('titan errors in a terminal (tmux, real coordinator)', () => {
  it(
    'an unknown model: said once, with the coordinator and a hint; exit 3',
    async () => {
      const t = tmux(titan('generate', '-m', 'no-such-model', 'hi'));
      expect(await t.waitForExit()).toBe(EXIT.UNAVAILABLE);
      const lines = t.screen().split('\n');
      expect(lines[0]).toBe(`titan: no agent available for model "no-such-model" (coordinator ${cluster.coordinator.address})`);
      expect(lines[1]).toMatch(/^hint: `titan status` lists the agents/);
      expect(t.screen().match(/no agent available/g)).toHaveLength(1);
    },
    TEST_TIMEOUT_MS,
  );
});

describe('titan generate in a terminal that reports 0 columns (script -qec)', () => {
  it(
    'the pty really reports 0 columns (what the other tests rely on)',
    async () => {
      // biome-ignore lint/suspicious/noTemplateCurlyInString: the child's own template literal
      const t = zeroWidth([process.execPath, '-e', 'process.stdout.write(`tty=${process.stderr.isTTY} columns=${process.stderr.columns}`)']);
      expect(await t.waitForExit()).toBe(0);
      expect(t.output()).toContain('tty=true columns=0');
    },
    TEST_TIMEOUT_MS,
  );

  it(
    'streams the whole text and the summary, exits 0, and writes no runaway output (no spinner)',
    async () => {
      const t = zeroWidth(titan('generate', '-m', SCRIPTED_MODEL, '--max-tokens', '40', 'tell', 'me'));
      // Before the fix the spinner looped forever here (cursor-up/clear at 100 % CPU).
      expect(await t.waitForExit()).toBe(EXIT.OK);
      const out = t.output();
      expect(out).toContain(words(40));
      expect(out.indexOf('40 tokens · TTFT')).toBeGreaterThan(out.indexOf(words(40)));
      expect(out.length).toBeLessThan(10_000);
      expect(out).not.toContain('\u001b[1A'); // no cursor-up: nothing tried to redraw lines
    },
    TEST_TIMEOUT_MS,
  );

  it(
    'SIGTERM ends the CLI (exit 143)',
    async () => {
      const t = zeroWidth(titan('generate', '-m', SCRIPTED_MODEL, '--max-tokens', '1000', 'long', 'story'));
      await waitFor('tokens on the terminal', () => t.output().includes('word3 '));
      t.kill('SIGTERM');
      expect(await t.waitForExit()).toBe(EXIT.TERMINATED);
      await agentIdle();
    },
    TEST_TIMEOUT_MS,
  );
});

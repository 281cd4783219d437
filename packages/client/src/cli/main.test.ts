import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runCli } from './main.js';
import { EXIT } from './exit-codes.js';
import {
  startFakeAgent,
  startFakeCoordinator,
  startFakeInstanceManager,
  type FakeAgent,
  type FakeCoordinator,
  type FakeInstanceManager,
} from '../test-support/fake-cluster.js';

async function run(argv: string[], env: Record<string, string> = {}) {
  let stdout = '';
  let stderr = '';
  const code = await runCli(argv, {
    stdout: { write: (s: string) => (stdout += s) },
    stderr: { write: (s: string) => (stderr += s) },
    env,
  });
  return { code, stdout, stderr };
}

let agents: FakeAgent[];
let coordinator: FakeCoordinator;
let im: FakeInstanceManager;
beforeAll(async () => {
  agents = [
    await startFakeAgent({ agentId: 'gpu-1', tokens: ['Hello', ',', ' world'] }),
    await startFakeAgent({ agentId: 'flaky', models: ['flaky'], tokens: ['a', 'b', 'c'], failAfterTokens: 1 }),
  ];
  coordinator = await startFakeCoordinator({ agents: () => agents });
  im = await startFakeInstanceManager();
});
afterAll(async () => {
  await coordinator.stop();
  for (const a of agents) await a.stop();
  await im.stop();
});

describe('titan generate', () => {
  it('streams the text to stdout and a summary (tokens, TTFT, tokens/s, agent) to stderr; exit 0', async () => {
    const r = await run(['generate', '--model', 'tiny', 'say', 'hi'], { TITAN_COORDINATOR: coordinator.address });
    expect(r.code).toBe(EXIT.OK);
    expect(r.stdout).toBe('Hello, world\n');
    expect(r.stderr).toMatch(/3 tokens · TTFT [\d.]+ ms .* tok\/s · agent gpu-1/);
  });

  it('--json prints one object with text and stats', async () => {
    const r = await run(['--coordinator', coordinator.address, 'generate', '-m', 'tiny', '--max-tokens', '2', '--param', 'seed=1', 'x', '--json']);
    expect(r.code).toBe(EXIT.OK);
    const out = JSON.parse(r.stdout) as { text: string; stats: { tokens: number; agentId: string; finishReason: string } };
    expect(out).toMatchObject({ text: 'Hello,', stats: { tokens: 2, agentId: 'gpu-1', finishReason: 'length' } });
    expect(coordinator.requests.at(-1)?.parameters).toEqual({ seed: '1' });
  });

  it('--json prints the temperature as given (0.7, not the float32 0.699999988079071)', async () => {
    const r = await run(['--coordinator', coordinator.address, '--json', 'generate', '-m', 'tiny', '--temperature', '0.7', 'x']);
    expect(r.code).toBe(EXIT.OK);
    expect(r.stdout).toContain('"temperature":0.7}');
    expect((JSON.parse(r.stdout) as { stats: { temperature: number } }).stats.temperature).toBe(0.7);
    // Measured times come out in whole microseconds, not as float noise (80.24634700000001).
    const ttft = (JSON.parse(r.stdout) as { stats: { clientTimeToFirstTokenMs: number } }).stats.clientTimeToFirstTokenMs;
    expect(String(ttft)).toMatch(/^\d+(\.\d{1,3})?$/);
  });

  it('a busy cluster: the busy message and its retry hint are said once, with what to do', async () => {
    const busy = await startFakeCoordinator({ agents: () => agents, busyRetryAfterMs: 1 });
    try {
      const r = await run(['--coordinator', busy.address, 'generate', '-m', 'tiny', 'x']);
      expect(r.code).toBe(EXIT.FAILED);
      const first = r.stderr.split('\n')[0] ?? '';
      expect(first).toMatch(/^titan: all agents serving tiny are busy; retry in 1 ms \(coordinator 127\.0\.0\.1:\d+\)/);
      expect(first.match(/\bretry\b/gi)).toHaveLength(1); // was "(retry after 1 ms): … retry in 1 ms"
      expect(first.match(/busy/gi)).toHaveLength(1); // was "… are busy … (still busy after 3 retries …)"
      expect(first).toMatch(/\(retried \d+ times? over \d+ ms\)/);
      expect(first).not.toContain('at capacity');
      expect(r.stderr).toMatch(/\nhint: every agent for this model is busy; try again in a moment\.\n$/);
    } finally {
      await busy.stop();
    }
  });

  it('exit 2 on usage errors (missing --model, bad numbers)', async () => {
    expect((await run(['generate', 'x'])).code).toBe(EXIT.USAGE);
    expect((await run(['generate', '-m', 'tiny', '--temperature', 'hot', 'x'])).code).toBe(EXIT.USAGE);
    expect((await run(['nope'])).code).toBe(EXIT.USAGE);
    const r = await run(['--coordinator', coordinator.address, 'generate', '-m', 'tiny', '--temperature', '5', 'x']);
    expect(r.code).toBe(EXIT.USAGE);
    expect(r.stderr).toContain('temperature');
  });

  it('exit 3 when the cluster is unavailable (no agent for the model, or unreachable)', async () => {
    const noModel = await run(['--coordinator', coordinator.address, 'generate', '-m', 'unknown-model', 'x']);
    expect(noModel.code).toBe(EXIT.UNAVAILABLE);
    expect(noModel.stderr).toContain('unknown-model');
    const unreachable = await run(['--coordinator', '127.0.0.1:1', '--json', 'generate', '-m', 'tiny', 'x']);
    expect(unreachable.code).toBe(EXIT.UNAVAILABLE);
    expect(JSON.parse(unreachable.stdout)).toMatchObject({
      error: { name: 'ConnectionError', codeName: 'UNAVAILABLE', address: '127.0.0.1:1', hint: expect.stringContaining('--coordinator') },
    });
  });

  it('a connection error says which address failed, why, and what to try (no raw grpc-js text)', async () => {
    const r = await run(['generate', '-m', 'tiny', 'x'], { TITAN_COORDINATOR: '127.0.0.1:1' });
    expect(r.code).toBe(EXIT.UNAVAILABLE);
    expect(r.stdout).toBe('');
    const [message, hint, rest] = r.stderr.split('\n');
    expect(message).toBe('titan: cannot reach coordinator at 127.0.0.1:1: connection refused (nothing listens there), ECONNREFUSED');
    expect(hint).toMatch(/^hint: .*127\.0\.0\.1:1.*`pnpm start`.*--coordinator HOST:PORT \(env TITAN_COORDINATOR\)/);
    expect(rest).toBe('');
    expect(r.stderr).not.toMatch(/Resolution note|No connection established/);
  });

  it('exit 4 when the stream breaks after text was printed; the text is not repeated', async () => {
    const r = await run(['--coordinator', coordinator.address, 'generate', '-m', 'flaky', 'x']);
    expect(r.code).toBe(EXIT.INTERRUPTED);
    expect(r.stdout).toBe('a\n');
    expect(r.stderr).toMatch(/broke after 1 token/);
  });
});

describe('titan chat', () => {
  it('sends --system then the MESSAGE words as one user turn, streams the reply; --json like generate', async () => {
    const r = await run(['--coordinator', coordinator.address, 'chat', '-m', 'tiny', '--system', 'Be brief.', 'say', 'hi']);
    expect(r.code).toBe(EXIT.OK);
    expect(r.stdout).toBe('Hello, world\n');
    expect(r.stderr).toMatch(/3 tokens · TTFT [\d.]+ ms .* agent gpu-1/);
    expect(coordinator.requests.at(-1)).toMatchObject({
      prompt: '',
      messages: [
        { role: 'system', content: 'Be brief.' },
        { role: 'user', content: 'say hi' },
      ],
    });
    const json = await run(['--coordinator', coordinator.address, '--json', 'chat', '-m', 'tiny', '--max-tokens', '2', 'x']);
    expect(json.code).toBe(EXIT.OK);
    expect(JSON.parse(json.stdout)).toMatchObject({ text: 'Hello,', stats: { tokens: 2, agentId: 'gpu-1' } });
  });

  it('--messages FILE.json gives the conversation; a MESSAGE is appended as a user turn', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'titan-chat-'));
    const file = join(dir, 'messages.json');
    const conversation = [
      { role: 'user', content: 'Hi' },
      { role: 'assistant', content: 'Hello!' },
    ];
    writeFileSync(file, JSON.stringify(conversation));
    try {
      const r = await run(['--coordinator', coordinator.address, 'chat', '-m', 'tiny', '--messages', file, 'And', 'now?']);
      expect(r.code).toBe(EXIT.OK);
      expect(coordinator.requests.at(-1)?.messages).toEqual([...conversation, { role: 'user', content: 'And now?' }]);
      writeFileSync(file, JSON.stringify([{ role: 'tool', content: 'x' }]));
      const bad = await run(['--coordinator', coordinator.address, 'chat', '-m', 'tiny', '--messages', file]);
      expect(bad.code).toBe(EXIT.USAGE);
      expect(bad.stderr).toMatch(/^titan: messages\[0\]\.role: must be system, user or assistant/);
      writeFileSync(file, '{"role": "user"}');
      const notArray = await run(['--coordinator', coordinator.address, 'chat', '-m', 'tiny', '--messages', file]);
      expect(notArray.code).toBe(EXIT.USAGE);
      expect(notArray.stderr).toMatch(/must hold a JSON array/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('exit 2 without a MESSAGE or --messages, or with an unreadable file', async () => {
    const none = await run(['--coordinator', coordinator.address, 'chat', '-m', 'tiny']);
    expect(none.code).toBe(EXIT.USAGE);
    expect(none.stderr).toMatch(/^titan: messages: give a MESSAGE or --messages FILE.json/);
    const missing = await run(['--coordinator', coordinator.address, 'chat', '-m', 'tiny', '--messages', '/nonexistent/m.json']);
    expect(missing.code).toBe(EXIT.USAGE);
    expect(missing.stderr).toMatch(/^titan: messages: cannot read \/nonexistent\/m.json/);
  });
});

describe('titan help and version', () => {
  it('-h, --help and --version work for titan and exit 0', async () => {
    for (const flag of ['-h', '--help']) {
      const r = await run([flag]);
      expect(r.code).toBe(EXIT.OK);
      expect(r.stdout).toMatch(/^Usage: titan \[options\] \[command\]/);
      expect(r.stdout).toContain('143  terminated (SIGTERM)');
    }
    const v = await run(['--version']);
    expect(v).toEqual({ code: EXIT.OK, stdout: '0.1.0\n', stderr: '' });
  });

  it('titan generate --help lists the global options, and no option shows a meaningless (default: {}) or (default: [])', async () => {
    const r = await run(['generate', '--help']);
    expect(r.code).toBe(EXIT.OK);
    expect(r.stdout).toMatch(/Global Options:[\s\S]*--coordinator <host:port>[\s\S]*--json[\s\S]*--timeout <ms>/);
    expect(r.stdout).toContain('-p, --param <key=value>');
    for (const argv of [
      ['generate', '--help'],
      ['instances', 'watch', '--help'],
      ['instances', 'ls', '--help'],
    ]) {
      const help = (await run(argv)).stdout;
      expect(help).not.toMatch(/\(default: (\{\}|\[\])\)/);
    }
  });

  it('repeated --param and --type still collect every value without a default', async () => {
    const r = await run(['--coordinator', coordinator.address, '--json', 'generate', '-m', 'tiny', '-p', 'seed=1', '-p', 'top_k=5', 'x']);
    expect(r.code).toBe(EXIT.OK);
    expect(coordinator.requests.at(-1)?.parameters).toEqual({ seed: '1', top_k: '5' });
  });
});

describe('titan status', () => {
  it('prints a table of agents with id, state, GPU memory, jobs and tokens/s', async () => {
    const r = await run(['--coordinator', coordinator.address, 'status']);
    expect(r.code).toBe(EXIT.OK);
    expect(r.stdout).toMatch(/AGENT\s+STATE\s+GPU MEMORY\s+JOBS\s+TOK\/S/);
    expect(r.stdout).toMatch(/^\d+ agent\(s\), \d+ healthy · \d+ job\(s\) scheduled · coordinator up /);
    expect(r.stdout).toMatch(/gpu-1\s+healthy\s+2000\/8000 MB\s+0\/4\s+42\.5/);
  });

  it('--json prints the status object', async () => {
    const r = await run(['--coordinator', coordinator.address, 'status', '--json']);
    expect(JSON.parse(r.stdout)).toMatchObject({ totalAgents: 2, agents: [{ id: 'gpu-1' }, { id: 'flaky' }] });
  });
});

describe('titan instances watch', () => {
  it('prints events as JSON lines, says on stderr that it is watching, and stops on the signal', async () => {
    const controller = new AbortController();
    let stdout = '';
    let stderr = '';
    const done = runCli(['--instance-manager', im.address, '--json', 'instances', 'watch'], {
      stdout: {
        write: (s: string) => {
          stdout += s;
          if (stdout.includes('"instanceId":"x2"')) controller.abort();
        },
      },
      stderr: { write: (s: string) => void (stderr += s) },
      env: {},
      signal: controller.signal,
    });
    while (im.subscriptions.length === 0) await new Promise((r) => setTimeout(r, 10));
    await new Promise((r) => setTimeout(r, 30));
    im.emitAdded('x1');
    im.emitAdded('x2');
    expect(await done).toBe(EXIT.OK);
    const events = stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { instanceId: string; type: string });
    expect(events.map((e) => [e.instanceId, e.type])).toEqual([
      ['x1', 'ADDED'],
      ['x2', 'ADDED'],
    ]);
    // A person sees that it is watching; on stderr, so stdout holds only the JSON lines above.
    expect(stderr).toBe(`watching instance events on ${im.address} (Ctrl-C to stop)…\n`);
  });

  it('exit 3 at once when the instance manager cannot be reached (no silent endless resubscribing)', async () => {
    const r = await run(['--instance-manager', '127.0.0.1:1', 'instances', 'watch']);
    expect(r.code).toBe(EXIT.UNAVAILABLE);
    expect(r.stderr).not.toContain('watching');
    expect(r.stderr).toContain('--instance-manager HOST:PORT');
  });

  it('exit 3 when the instance manager cannot be reached', async () => {
    const r = await run(['--instance-manager', '127.0.0.1:1', 'instances', 'ls']);
    expect(r.code).toBe(EXIT.UNAVAILABLE);
    expect(r.stderr).toMatch(/cannot reach instance-manager/);
  });
});

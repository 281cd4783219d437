import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { afterEach, beforeAll, describe, expect, it } from '@jest/globals';
import { startFakeCoordinator, type FakeCoordinator } from './test-support/fake-coordinator.js';
import { startFakeInstanceManager } from './test-support/fake-instance-manager.js';

const repoRoot = fileURLToPath(new URL('../../../', import.meta.url));
const bin = fileURLToPath(new URL('../dist/bin.js', import.meta.url));

beforeAll(() => {
  // The bin runs as a real process: build this package (and its references) first.
  execFileSync('pnpm', ['exec', 'tsc', '-b', 'packages/agent'], { cwd: repoRoot, stdio: 'inherit' });
}, 120_000);

const children: ChildProcess[] = [];
const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of children.splice(0)) if (c.exitCode === null) c.kill('SIGKILL');
  while (cleanups.length) await cleanups.pop()!();
});

function spawnAgent(args: string[]): {
  child: ChildProcess;
  lines: Record<string, unknown>[];
  exited: Promise<number | null>;
  waitForLog: (msg: string) => Promise<Record<string, unknown>>;
} {
  const child = spawn(process.execPath, [bin, ...args], {
    env: { ...process.env, TITAN_NVIDIA_SMI: '/nonexistent/nvidia-smi' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.push(child);
  const lines: Record<string, unknown>[] = [];
  let buffer = '';
  const waiters: { msg: string; resolve: (l: Record<string, unknown>) => void }[] = [];
  child.stdout!.on('data', (d: Buffer) => {
    buffer += d.toString();
    let nl: number;
    while ((nl = buffer.indexOf('\n')) >= 0) {
      const line = buffer.slice(0, nl);
      buffer = buffer.slice(nl + 1);
      try {
        const parsed = JSON.parse(line) as Record<string, unknown>;
        lines.push(parsed);
        for (const w of waiters.filter((x) => x.msg === parsed.msg)) w.resolve(parsed);
      } catch {
        /* not JSON */
      }
    }
  });
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  return {
    child,
    lines,
    exited,
    waitForLog: (msg) => {
      const found = lines.find((l) => l.msg === msg);
      if (found) return Promise.resolve(found);
      return new Promise((resolve, reject) => {
        waiters.push({ msg, resolve });
        void exited.then((code) => reject(new Error(`agent exited (${code}) before logging "${msg}": ${stderr}`)));
      });
    },
  };
}

async function coordinatorForTest(): Promise<FakeCoordinator> {
  const c = await startFakeCoordinator();
  cleanups.push(() => c.stop());
  return c;
}

describe('titan-agent bin', () => {
  it('logs the listening port, registers, and on SIGTERM drains, deregisters and exits 0', async () => {
    const coordinator = await coordinatorForTest();
    const agent = spawnAgent([
      '--port',
      '0',
      '--host',
      '127.0.0.1',
      '--coordinator',
      coordinator.address,
      '--join-token',
      'join-secret',
      '--agent-id',
      'bin-agent',
      '--heartbeat-interval',
      '200ms',
    ]);
    const listening = await agent.waitForLog('listening');
    expect(listening.port).toEqual(expect.any(Number));
    await coordinator.waitFor(() => coordinator.registrations.length === 1, 10_000);
    expect(coordinator.registrations[0]).toMatchObject({
      agentId: 'bin-agent',
      endpoint: `127.0.0.1:${String(listening.port)}`,
      supportedModels: ['llama-2-tiny-random'],
    });
    agent.child.kill('SIGTERM');
    expect(await agent.exited).toBe(0);
    expect(coordinator.deregistrations.map((d) => d.agentId)).toEqual(['bin-agent']);
  });

  it('exits 0 after draining when the instance manager says to stop', async () => {
    const coordinator = await coordinatorForTest();
    const im = await startFakeInstanceManager();
    cleanups.push(() => im.stop());
    const agent = spawnAgent([
      '--port',
      '0',
      '--host',
      '127.0.0.1',
      '--coordinator',
      coordinator.address,
      '--join-token',
      'join-secret',
      '--instance-manager',
      im.address,
      '--im-health-interval',
      '100ms',
    ]);
    await agent.waitForLog('agent ready');
    await coordinator.waitFor(() => im.healthChecks > 0, 10_000);
    im.healthy = false;
    const told = await agent.waitForLog('instance manager told this agent to stop');
    expect(told.msg).toBe('instance manager told this agent to stop');
    expect(await agent.exited).toBe(0);
  });

  it('exits 2 with a message naming the option on bad configuration', async () => {
    const agent = spawnAgent(['--port', '0', '--join-token', 'x', '--max-concurrent-jobs', 'many']);
    expect(await agent.exited).toBe(2);
    const missing = spawnAgent(['--port', '0']);
    expect(await missing.exited).toBe(2);
  });
});

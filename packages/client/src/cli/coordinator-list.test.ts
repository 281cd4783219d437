/**
 * The built `titan` CLI (`pnpm build` first) with several coordinator addresses: the first one
 * dead (a freed port), the second a fake coordinator in this process.
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { freePort } from '@titancompute/test-support/free-port';
import { startFakeAgent, startFakeCoordinator, type FakeAgent, type FakeCoordinator } from '../test-support/fake-cluster.js';
import { CLI_BIN } from '../test-support/terminal.js';
import { EXIT } from './exit-codes.js';

/** Runs the built CLI with `args` (and `env` over a clean environment); never rejects. */
function titan(args: string[], env: Record<string, string> = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  const base: NodeJS.ProcessEnv = { ...process.env, ...env };
  delete base.NODE_OPTIONS; // jest's --experimental-vm-modules is not the CLI's business
  delete base.TITAN_COORDINATOR;
  Object.assign(base, env);
  return new Promise((resolve) => {
    execFile(process.execPath, [CLI_BIN, ...args], { env: base, timeout: 20_000 }, (error, stdout, stderr) => {
      const code = error ? (typeof error.code === 'number' ? error.code : 1) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

let agent: FakeAgent;
let coordinator: FakeCoordinator;
let dead: string;
beforeAll(async () => {
  if (!existsSync(CLI_BIN)) throw new Error(`these tests run the built CLI ${CLI_BIN}: run \`pnpm build\` first`);
  agent = await startFakeAgent({ agentId: 'gpu-1', tokens: ['Hello', ',', ' world'] });
  coordinator = await startFakeCoordinator({ agents: () => [agent] });
  dead = `127.0.0.1:${await freePort()}`;
});
afterAll(async () => {
  await coordinator.stop();
  await agent.stop();
});

describe('titan with several coordinators', () => {
  it('--coordinator dead,alive: generate streams the text through the live one; exit 0', async () => {
    const r = await titan(['--coordinator', `${dead},${coordinator.address}`, 'generate', '-m', 'tiny', 'say', 'hi']);
    expect(r.stderr).not.toMatch(/titan:/);
    expect(r.code).toBe(EXIT.OK);
    expect(r.stdout).toBe('Hello, world\n');
    expect(coordinator.requests.at(-1)?.prompt).toBe('say hi');
  });

  it('TITAN_COORDINATOR=dead,alive: status lists the agents of the live one', async () => {
    const r = await titan(['status', '--json'], { TITAN_COORDINATOR: `${dead},${coordinator.address}` });
    expect(r.code).toBe(EXIT.OK);
    expect((JSON.parse(r.stdout) as { agents: Array<{ id: string }> }).agents.map((a) => a.id)).toEqual(['gpu-1']);
  });

  it('every coordinator dead: exit 3, the error names each address, with a hint', async () => {
    const other = `127.0.0.1:${await freePort()}`;
    const r = await titan(['--coordinator', `${dead},${other}`, 'generate', '-m', 'tiny', 'x']);
    expect(r.code).toBe(EXIT.UNAVAILABLE);
    const [message, hint] = r.stderr.trimEnd().split('\n');
    expect(message).toBe(
      `titan: no coordinator answered (tried 2): ${dead} (connection refused (nothing listens there), ECONNREFUSED); ${other} (connection refused (nothing listens there), ECONNREFUSED)`,
    );
    expect(hint).toBe(
      `hint: is the cluster running? None of its coordinators (${dead}, ${other}) answered; check that --coordinator (env TITAN_COORDINATOR) lists them, comma-separated.`,
    );
  });
});

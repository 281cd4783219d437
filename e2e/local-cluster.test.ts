/**
 * The README's main job: `pnpm start` (scripts/cluster.mjs) runs a local cluster until Ctrl-C
 * (or SIGTERM, or SIGHUP when the terminal closes), then stops every service and exits 0; if the
 * launcher itself is SIGKILLed, every service still goes away; a service that exits on its own
 * (e.g. `titan instances kill agent-2`) is reported and restarted while the cluster keeps serving;
 * `pnpm demo` streams one request and exits 0.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from '@jest/globals';
import { waitForAgents } from '../scripts/lib/launch.mjs';
import { MODEL, repoRoot, runTitan, tempDir, waitFor } from './support.js';

const exec = promisify(execFile);
const script = join(repoRoot, 'scripts/cluster.mjs');

/** PIDs of processes whose command line mentions `needle` (our temp data dir). */
async function processesMentioning(needle: string): Promise<number[]> {
  const { stdout } = await exec('ps', ['-eo', 'pid=,args=']);
  return stdout
    .split('\n')
    .filter((line) => line.includes(needle) && !line.includes('ps -eo'))
    .map((line) => Number(line.trim().split(/\s+/)[0]));
}

interface Launcher {
  child: ChildProcess;
  dataDir: string;
  output: () => string;
  exited: Promise<number | null>;
  /** Resolves once the output matches `pattern`; throws after `timeoutMs`. */
  waitForOutput: (pattern: RegExp, timeoutMs?: number) => Promise<RegExpExecArray>;
}

/** `node scripts/cluster.mjs` with free ports and its own data dir, up and serving. */
async function startLauncher(name: string): Promise<Launcher> {
  const dataDir = tempDir(name);
  const child = spawn(process.execPath, [script], {
    cwd: repoRoot,
    env: { ...process.env, TITAN_CLUSTER_PORTS: 'auto', TITAN_CLUSTER_DATA_DIR: dataDir },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  const waitForOutput = async (pattern: RegExp, timeoutMs = 60_000) =>
    (await waitFor(async () => pattern.exec(out) ?? undefined, timeoutMs, `${pattern} in the launcher output:\n${out}`)).value;
  await waitForOutput(/Press Ctrl-C to stop\.|could not start/, 90_000);
  expect(out).toContain('Press Ctrl-C to stop.');
  return { child, dataDir, output: () => out, exited, waitForOutput };
}

/** The address a `titan … --flag ADDRESS` line printed by the launcher names. */
function printedAddress(out: string, label: RegExp): string {
  return label.exec(out)![1]!;
}

describe('the local cluster script', () => {
  it('pnpm start: prints every address and titan lines that work as printed; serves until SIGINT, then stops every service and exits 0', async () => {
    const launcher = await startLauncher('start');
    const out = launcher.output();
    expect(out).toMatch(/instance manager {2}grpc 127\.0\.0\.1:\d+/);
    expect(out).toMatch(/coordinator {7}grpc 127\.0\.0\.1:\d+ {3}http http:\/\/127\.0\.0\.1:\d+\/api\/v1\/status/);
    expect(out).toMatch(/agent-1 {11}grpc 127\.0\.0\.1:\d+/);
    expect(out).toMatch(/agent-2 {11}grpc 127\.0\.0\.1:\d+/);
    // The dashboard's URL, and it answers.
    const dashboardUrl = /dashboard {9}(http:\/\/127\.0\.0\.1:\d+\/)\n/.exec(out)?.[1];
    expect(dashboardUrl).toBeDefined();
    expect((await fetch(dashboardUrl!)).status).toBe(200);
    expect(out).toMatch(/\n {20}\(once API keys exist, log in with the token in \S*admin-token\)\n/);
    // Each printed `pnpm exec titan …` line works as printed, from the repository root.
    const lines = out
      .split('\n')
      .filter((l) => l.startsWith('  pnpm exec titan '))
      .map((l) => l.trim());
    expect(lines.map((l) => l.split(' ')[3])).toEqual(['generate', 'status', 'instances']);
    const imAddress = printedAddress(out, /instance manager {2}grpc (\S+)/);
    expect(lines[2]).toBe(`pnpm exec titan instances ls --instance-manager ${imAddress}`);
    for (const line of lines) {
      const { stdout } = await exec('sh', ['-c', line], { cwd: repoRoot, timeout: 60_000 });
      if (line.includes('instances ls')) expect(stdout).toMatch(/agent-1[\s\S]*agent-2|agent-2[\s\S]*agent-1/);
    }
    // Four services run from our data dir.
    expect(await processesMentioning(launcher.dataDir)).toHaveLength(4);

    launcher.child.kill('SIGINT');
    expect(await launcher.exited).toBe(0);
    expect(launcher.output()).toContain('stopping the cluster');
    expect(launcher.output()).not.toContain('uncleanly');
    expect(await processesMentioning(launcher.dataDir)).toEqual([]);
  }, 180_000);

  it('an agent killed through the instance manager is reported and restarted, the cluster keeps serving; SIGHUP (terminal closed) stops everything', async () => {
    const launcher = await startLauncher('kill-agent');
    const imAddress = printedAddress(launcher.output(), /instance manager {2}grpc (\S+)/);
    const coordinatorAddress = printedAddress(launcher.output(), /coordinator {7}grpc (\S+)/);
    const agent2Address = printedAddress(launcher.output(), /agent-2 {11}grpc (\S+)/);

    const killed = await runTitan(['instances', 'kill', 'agent-2', '--instance-manager', imAddress]);
    expect(killed).toMatchObject({ code: 0 });
    await launcher.waitForOutput(/agent-2 exited \(0\); restarting it/);
    // The rest of the cluster did not stop.
    expect(launcher.output()).not.toContain('stopping the cluster');
    expect(launcher.child.exitCode).toBeNull();
    const generated = await runTitan(['generate', '--coordinator', coordinatorAddress, '--model', MODEL, '--max-tokens', '4', 'Hi']);
    expect(generated.code).toBe(0);
    // agent-2 comes back on its port and is routable again.
    await launcher.waitForOutput(new RegExp(`agent-2 restarted \\(grpc ${agent2Address.replace(/\./g, '\\.')}\\)`), 90_000);
    await waitForAgents(coordinatorAddress, 2, 60_000);
    expect(await processesMentioning(launcher.dataDir)).toHaveLength(4);

    launcher.child.kill('SIGHUP');
    expect(await launcher.exited).toBe(0);
    expect(launcher.output()).toContain('stopping the cluster');
    expect(await processesMentioning(launcher.dataDir)).toEqual([]);
  }, 240_000);

  it('SIGKILL of the launcher leaves no service behind', async () => {
    const launcher = await startLauncher('sigkill');
    expect(await processesMentioning(launcher.dataDir)).toHaveLength(4);
    launcher.child.kill('SIGKILL');
    await launcher.exited;
    // Each service sees its parent is gone and shuts down (drain included).
    await waitFor(async () => (await processesMentioning(launcher.dataDir)).length === 0, 60_000, 'every service to exit');
  }, 180_000);

  it('pnpm demo: streams one request through the SDK, prints the stats and exits 0', async () => {
    const { stdout } = await exec(process.execPath, [script, '--demo'], {
      cwd: repoRoot,
      env: { ...process.env, TITAN_CLUSTER_DATA_DIR: tempDir('demo') },
      timeout: 120_000,
    });
    expect(stdout).toContain(`demo: generate --model ${MODEL}`);
    expect(stdout).toMatch(/tokens: 32 {3}time to first token: [\d.]+ ms {3}tokens\/s: [\d.]+ {3}agent: agent-[12]/);
  }, 120_000);
});

/**
 * The README's main job: `pnpm start` (scripts/cluster.mjs) runs a local cluster until Ctrl-C,
 * then stops every service and exits 0; `pnpm demo` streams one request and exits 0.
 */
import { execFile, spawn } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from '@jest/globals';
import { MODEL, repoRoot, runTitan, tempDir } from './support.js';

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

describe('the local cluster script', () => {
  it('pnpm start: serves until SIGINT, then stops every service and exits 0', async () => {
    const dataDir = tempDir('start');
    const child = spawn(process.execPath, [script], {
      cwd: repoRoot,
      env: { ...process.env, TITAN_CLUSTER_PORTS: 'auto', TITAN_CLUSTER_DATA_DIR: dataDir },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    const deadline = Date.now() + 60_000;
    while (!out.includes('Press Ctrl-C') && Date.now() < deadline && child.exitCode === null) await new Promise((r) => setTimeout(r, 200));
    expect(out).toContain('Press Ctrl-C to stop.');
    expect(out).toMatch(/instance manager {2}grpc 127\.0\.0\.1:\d+/);
    // The printed `titan generate` line works as printed.
    const tryLine = /node (packages\/client\/dist\/cli\/bin\.js generate .*)$/m.exec(out)?.[1];
    expect(tryLine).toBeDefined();
    const args = tryLine!.split(' ').slice(1).map((a) => a.replace(/^"|"$/g, ''));
    const generated = await runTitan([...args, '--max-tokens', '4']);
    expect(generated.code).toBe(0);
    expect(generated.stderr).toMatch(/4 tokens/);
    // Four services run from our data dir.
    expect(await processesMentioning(dataDir)).toHaveLength(4);

    child.kill('SIGINT');
    expect(await exited).toBe(0);
    expect(out).toContain('stopping the cluster');
    expect(out).not.toContain('uncleanly');
    expect(await processesMentioning(dataDir)).toEqual([]);
  }, 120_000);

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

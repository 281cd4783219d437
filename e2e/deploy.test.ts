/**
 * What can be proven about the images without a Docker engine: each service, deployed with
 * scripts/deploy.mjs (the script its Dockerfile runs) into an empty folder outside the repo
 * and then moved, starts from there with the Dockerfile's own CMD and ENV, and its
 * Dockerfile's HEALTHCHECK command reports SERVING. A wrong path or command in a Dockerfile
 * fails this test.
 */
import { execFile, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, renameSync, rmSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from '@jest/globals';
import { freePort, repoRoot } from './support.js';

const exec = promisify(execFile);

interface DockerfileFacts {
  cmd: string[];
  healthcheck: string[];
  env: Record<string, string>;
  deployLine: string;
}

/** Reads the final stage's CMD, HEALTHCHECK and ENV and the deploy command of a Dockerfile. */
function readDockerfile(service: string): DockerfileFacts {
  const text = readFileSync(join(repoRoot, 'packages', service, 'Dockerfile'), 'utf8').replace(/\\\n/g, ' ');
  const lines = text.split('\n');
  const json = (line: string | undefined, what: string): string[] => {
    const m = /(\[.*\])\s*$/.exec(line ?? '');
    if (!m?.[1]) throw new Error(`${service}/Dockerfile: no ${what} in exec form`);
    return JSON.parse(m[1]) as string[];
  };
  const env: Record<string, string> = {};
  const finalStage = lines.slice(lines.findLastIndex((l) => l.startsWith('FROM ')));
  for (const line of finalStage.filter((l) => l.startsWith('ENV '))) {
    for (const m of line.slice(4).matchAll(/([A-Z_]+)=(\S+)/g)) env[m[1]!] = m[2]!;
  }
  return {
    cmd: json(
      finalStage.find((l) => l.startsWith('CMD ')),
      'CMD',
    ),
    healthcheck: json(
      finalStage.find((l) => l.startsWith('HEALTHCHECK ')),
      'HEALTHCHECK',
    ),
    env,
    deployLine: lines.find((l) => l.includes('scripts/deploy.mjs')) ?? '',
  };
}

const work = mkdtempSync(join(tmpdir(), 'titan-deploy-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

describe.each(['instance-manager', 'coordinator', 'agent'])('deployed %s', (service) => {
  it('starts from a moved pnpm deploy folder with the Dockerfile CMD and reports SERVING to its HEALTHCHECK', async () => {
    const facts = readDockerfile(service);
    expect(facts.deployLine).toContain(`node scripts/deploy.mjs ${service} /out`);

    const staged = join(work, `${service}-staged`);
    await exec(process.execPath, [join(repoRoot, 'scripts/deploy.mjs'), service, staged], { cwd: repoRoot });
    const app = join(work, `${service}-moved`, 'app');
    rmSync(join(app, '..'), { recursive: true, force: true });
    await exec('mkdir', ['-p', join(app, '..')]);
    renameSync(staged, app);
    expect(existsSync(join(app, 'node_modules/@titancompute'))).toBe(true);

    const port = await freePort();
    const env = {
      PATH: process.env.PATH ?? '',
      HOME: process.env.HOME ?? '/tmp',
      ...facts.env,
      TITAN_PORT: String(port),
      TITAN_HOST: '127.0.0.1',
      TITAN_DATA_DIR: join(work, `${service}-data`),
      TITAN_LOG_LEVEL: 'warn',
      // The coordinator's REST API and the agent's coordinator link need somewhere to go.
      TITAN_HTTP_PORT: String(await freePort()),
      TITAN_COORDINATOR: `127.0.0.1:${await freePort()}`,
      TITAN_JOIN_TOKEN: 'deploy-test-token',
    };
    const [cmd, ...args] = facts.cmd;
    const child = spawn(cmd === 'node' ? process.execPath : cmd!, args, { cwd: app, env, stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    try {
      const [hcCmd, ...hcArgs] = facts.healthcheck;
      let last = '';
      let serving = false;
      for (let attempt = 0; attempt < 60 && !serving; attempt += 1) {
        if (child.exitCode !== null) throw new Error(`${service} exited with ${child.exitCode}: ${stderr}`);
        try {
          const { stdout } = await exec(hcCmd === 'node' ? process.execPath : hcCmd!, hcArgs, { cwd: app, env });
          last = stdout;
          serving = true;
        } catch (err) {
          last = String((err as { stdout?: string }).stdout ?? err);
          await new Promise((r) => setTimeout(r, 500));
        }
      }
      expect(last.trim()).toBe(`127.0.0.1:${port}: SERVING`);
      if (service === 'coordinator') {
        // The dashboard's built files ship in the image: / serves the app.
        const res = await fetch(`http://127.0.0.1:${env.TITAN_HTTP_PORT}/`);
        expect(res.status).toBe(200);
        expect(await res.text()).toContain('<div id="app"></div>');
      }
    } finally {
      child.kill('SIGTERM');
    }
    expect(await exited).toBe(0);
  }, 120_000);
});

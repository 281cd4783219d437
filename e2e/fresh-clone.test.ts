/**
 * A person's first minutes: `git clone`, one `pnpm install`, and `pnpm exec titan --help`
 * works — no "Failed to create bin" warnings (the bins are committed launchers), no "Ignored
 * build scripts" box (pnpm-workspace.yaml declares which dependencies may build), and the
 * install's `prepare` step built what the bins run. Clones the committed HEAD of this
 * repository; installs offline from the warm pnpm store.
 */
import { execFile } from 'node:child_process';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from '@jest/globals';
import { repoRoot, tempDir } from './support.js';

const exec = promisify(execFile);
const dir = join(tempDir('fresh-clone'), 'titancompute');

afterAll(() => rmSync(join(dir, '..'), { recursive: true, force: true }));

describe('a fresh clone', () => {
  it('one pnpm install leaves every bin working, without bin or build-script warnings', async () => {
    await exec('git', ['clone', '--quiet', repoRoot, dir]);
    const env = { ...process.env, CI: 'true', FORCE_COLOR: '0' };
    const install = await exec('pnpm', ['install', '--frozen-lockfile', '--offline'], { cwd: dir, env, timeout: 280_000, maxBuffer: 16 * 1024 * 1024 });
    const output = install.stdout + install.stderr;
    expect(output).not.toContain('Failed to create bin');
    expect(output).not.toContain('Ignored build scripts');

    const titan = await exec('pnpm', ['exec', 'titan', '--help'], { cwd: dir, env });
    expect(titan.stdout).toContain('Usage: titan');
    for (const bin of ['titan-coordinator', 'titan-agent', 'titan-instance-manager', 'titan-healthcheck']) {
      const { stdout } = await exec('pnpm', ['exec', bin, '--version'], { cwd: dir, env });
      expect(stdout).toMatch(new RegExp(`^${bin} \\d+\\.\\d+\\.\\d+\\n$`));
    }
  }, 300_000);
});

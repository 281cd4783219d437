import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { InvalidArgumentError as CommanderInvalidArgument } from 'commander';
import { SCRIPTED_MODEL, startRealCluster, type RealCluster } from '@titancompute/test-support';
import { AuthError, QuotaExceededError, Status, TitanAdminClient, TitanClient } from '../index.js';
import { hintFor } from './error-hints.js';
import { EXIT, exitCodeFor } from './exit-codes.js';
import { runCli } from './main.js';
import { parseLifetimeArg } from './parsers.js';

async function run(argv: string[], env: Record<string, string> = {}) {
  let stdout = '';
  let stderr = '';
  const code = await runCli(argv, { stdout: { write: (s: string) => (stdout += s) }, stderr: { write: (s: string) => (stderr += s) }, env });
  return { code, stdout, stderr };
}

let cluster: RealCluster;
let coordinator: string;
let admin: string;
let dir: string;
beforeAll(async () => {
  cluster = await startRealCluster([{ agentId: 'agent-a' }]);
  coordinator = cluster.coordinator.address;
  admin = cluster.coordinator.adminToken;
  dir = mkdtempSync(join(tmpdir(), 'titan-keys-cli-'));
});
afterAll(async () => {
  await cluster.stop();
  rmSync(dir, { recursive: true, force: true });
});

const keys = (...args: string[]) => run(['--coordinator', coordinator, 'keys', ...args, '--admin-token', admin]);
const generate = (env: Record<string, string>, ...args: string[]) =>
  run(['--coordinator', coordinator, 'generate', '-m', SCRIPTED_MODEL, '--max-tokens', '3', ...args, 'hello'], env);

describe('titan keys', () => {
  it('needs the admin token: none is a usage error, a wrong one exit 5 with a hint; a file or TITAN_ADMIN_TOKEN work', async () => {
    const none = await run(['--coordinator', coordinator, 'keys', 'ls']);
    expect(none.code).toBe(EXIT.USAGE);
    expect(none.stderr).toMatch(/--admin-token TOKEN \(env TITAN_ADMIN_TOKEN\) or --admin-token-file/);
    const wrong = await run(['--coordinator', coordinator, 'keys', 'ls', '--admin-token', 'nope']);
    expect(wrong.code).toBe(EXIT.AUTH);
    expect(wrong.stderr).toMatch(
      /^titan: coordinator refused the credentials \(UNAUTHENTICATED\): invalid admin token\nhint: pass the coordinator's admin token/,
    );
    const file = join(dir, 'admin-token');
    writeFileSync(file, `${admin}\n`);
    expect((await run(['--coordinator', coordinator, 'keys', 'ls', '--admin-token-file', file])).code).toBe(EXIT.OK);
    expect((await run(['--coordinator', coordinator, 'keys', 'ls'], { TITAN_ADMIN_TOKEN: admin })).code).toBe(EXIT.OK);
    expect((await run(['--coordinator', coordinator, 'keys', 'ls', '--admin-token-file', join(dir, 'missing')])).code).toBe(EXIT.USAGE);
  });

  it('create prints the secret once (stdout) with a warning; ls shows name, id, prefix, limits, usage, expiry and state; revoke', async () => {
    const created = await keys(
      'create',
      '--name',
      'cli-a',
      '--rpm',
      '60',
      '--tpm',
      '20000',
      '--max-concurrent',
      '2',
      '--models',
      `${SCRIPTED_MODEL},other`,
      '--expires',
      '30d',
    );
    expect(created.code).toBe(EXIT.OK);
    const secret = created.stdout.trim();
    expect(secret).toMatch(/^tk-[A-Za-z0-9_-]{43}$/);
    expect(created.stderr).toMatch(
      /^created API key "cli-a" \(key-[0-9a-f]{12}, tk-.{7}…\): rpm 60, tpm 20000, concurrent 2, models scripted,other; expires 20\d\d-/,
    );
    expect(created.stderr).toContain('warning: this is the only time the secret is shown');

    const again = await keys('create', '--name', 'cli-a');
    expect(again.code).toBe(EXIT.FAILED);
    expect(again.stderr).toMatch(/already named "cli-a"[\s\S]*hint: revoke the old key first/);

    const json = await run(['--coordinator', coordinator, '--json', 'keys', 'create', '--name', 'cli-b', '--budget-tokens', '1000', '--admin-token', admin]);
    const parsed = JSON.parse(json.stdout) as { key: { name: string; budgetTokens: number; state: string }; secret: string; warning: string };
    expect(parsed).toMatchObject({
      key: { name: 'cli-b', budgetTokens: 1000, state: 'active' },
      secret: expect.stringMatching(/^tk-/),
      warning: expect.any(String),
    });

    const ls = await keys('ls');
    expect(ls.code).toBe(EXIT.OK);
    const [header, ...rows] = ls.stdout.trimEnd().split('\n');
    expect(header).toMatch(/^NAME\s+ID\s+PREFIX\s+LIMITS\s+USAGE\s+EXPIRES\s+STATE$/);
    expect(rows.find((r) => r.startsWith('cli-a'))).toMatch(
      new RegExp(
        `^cli-a\\s+key-[0-9a-f]{12}\\s+${secret.slice(0, 10).replace(/[-]/g, '\\-')}…\\s+rpm 60, tpm 20000, concurrent 2, models scripted,other\\s+0 tokens, 0 requests\\s+20\\d\\d-\\d\\d-\\d\\d \\d\\d:\\d\\dZ\\s+active$`,
      ),
    );
    expect(rows.find((r) => r.startsWith('cli-b'))).toMatch(/budget 1000\s+0\/1000 tokens, 0 requests\s+never\s+active$/);
    expect(ls.stdout).not.toContain(secret.slice(10));
    const lsJson = JSON.parse((await run(['--coordinator', coordinator, 'keys', 'ls', '--json', '--admin-token', admin])).stdout) as Array<{ name: string }>;
    expect(lsJson.map((k) => k.name)).toEqual(expect.arrayContaining(['cli-a', 'cli-b']));

    const revoked = await keys('revoke', 'cli-b');
    expect(revoked).toMatchObject({ code: EXIT.OK, stdout: expect.stringMatching(/^revoked API key "cli-b" \(key-/) });
    expect((await keys('ls')).stdout).not.toContain('cli-b');
    expect((await keys('ls', '--all')).stdout).toMatch(/cli-b.*revoked/);
    expect((await keys('revoke', 'nobody')).code).toBe(EXIT.FAILED);
    expect((await keys('create', '--name', 'x', '--expires', 'soon')).code).toBe(EXIT.USAGE);
    await keys('revoke', 'cli-a');
  });
});

describe('API keys in generate and the SDK', () => {
  it('generate needs --api-key (or TITAN_API_KEY) once keys exist; 401, 403 and 429 are told apart (exit 5, 6) with hints', async () => {
    const created = await keys('create', '--name', 'gen', '--models', SCRIPTED_MODEL, '--rpm', '2');
    const secret = created.stdout.trim();
    try {
      const missing = await generate({});
      expect(missing.code).toBe(EXIT.AUTH);
      expect(missing.stderr).toMatch(/missing API key[\s\S]*hint: this coordinator requires an API key: pass --api-key tk-… \(env TITAN_API_KEY\)/);

      const ok = await generate({}, '--api-key', secret);
      expect(ok).toMatchObject({ code: EXIT.OK, stdout: 'word0 word1 word2 \n' });
      expect((await generate({ TITAN_API_KEY: secret })).code).toBe(EXIT.OK);

      const limited = await generate({ TITAN_API_KEY: secret });
      expect(limited.code).toBe(EXIT.QUOTA);
      expect(limited.stderr).toMatch(
        /API key "gen" exceeded its requests per minute limit of 2[\s\S]*hint: this API key's requests-per-minute limit is reached; try again in \d+ s\./,
      );
      const limitedJson = await run(['--coordinator', coordinator, '--json', 'generate', '-m', SCRIPTED_MODEL, 'x'], { TITAN_API_KEY: secret });
      expect(JSON.parse(limitedJson.stdout)).toMatchObject({ error: { name: 'QuotaExceededError', quota: 'rpm', codeName: 'RESOURCE_EXHAUSTED' } });

      const other = await run(['--coordinator', coordinator, 'generate', '-m', 'other-model', 'x'], { TITAN_API_KEY: secret });
      expect(other.code).toBe(EXIT.AUTH);
      expect(other.stderr).toMatch(/may not use model "other-model"[\s\S]*hint: this API key may not use this model/);
    } finally {
      await keys('revoke', 'gen');
    }
  });

  it('the SDK sends apiKey on RequestInference; a spent budget is a QuotaExceededError that is not retried', async () => {
    const adminClient = new TitanAdminClient({ coordinator, adminToken: admin });
    const { key, secret } = await adminClient.createApiKey({ name: 'sdk', budgetTokens: 2 });
    expect(key).toMatchObject({ name: 'sdk', budgetTokens: 2, state: 'active', tokensUsed: 0, expiresAtMs: undefined });
    const client = new TitanClient({ coordinator, apiKey: secret, busyRetries: 5 });
    const anonymous = new TitanClient({ coordinator, apiKey: '' });
    try {
      const done = await client.complete({ model: SCRIPTED_MODEL, prompt: 'p', maxTokens: 3 });
      expect(done.text).toBe('word0 word1 word2 ');
      const [listed] = (await adminClient.listApiKeys()).filter((k) => k.name === 'sdk');
      expect(listed).toMatchObject({ requestsTotal: 1 });
      expect(listed!.tokensUsed).toBeGreaterThanOrEqual(3); // what the agent reported: 3 generated (+ prompt tokens)
      const started = Date.now();
      const spent = await client.complete({ model: SCRIPTED_MODEL, prompt: 'p', maxTokens: 3 }).catch((e: unknown) => e);
      expect(Date.now() - started).toBeLessThan(1000); // no busy retries for a budget
      expect(spent).toBeInstanceOf(QuotaExceededError);
      expect(spent).toMatchObject({ quota: 'budget', retryAfterMs: undefined, code: Status.RESOURCE_EXHAUSTED });
      expect(exitCodeFor(spent)).toBe(EXIT.QUOTA);
      expect(hintFor(spent)).toMatch(/token budget is spent/);
      const refused = await anonymous.complete({ model: SCRIPTED_MODEL, prompt: 'p' }).catch((e: unknown) => e);
      expect(refused).toBeInstanceOf(AuthError);
      expect((refused as AuthError).code).toBe(Status.UNAUTHENTICATED);
    } finally {
      await adminClient.revokeApiKey('sdk');
      client.close();
      anonymous.close();
      adminClient.close();
    }
  });
});

describe('--expires parsing', () => {
  it('takes s, m, h, d, w (bare numbers are seconds)', () => {
    const parse = parseLifetimeArg('--expires');
    expect([parse('30d'), parse('12h'), parse('90m'), parse('2w'), parse('45'), parse('1.5h')]).toEqual([2_592_000, 43_200, 5400, 1_209_600, 45, 5400]);
    for (const bad of ['', 'soon', '0s', '-1d', '3y']) expect(() => parse(bad)).toThrow(CommanderInvalidArgument);
  });
});

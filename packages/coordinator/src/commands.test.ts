import { rmSync } from 'node:fs';
import { afterEach, describe, expect, it } from '@jest/globals';
import { ConfigError, loadConfig } from '@titancompute/server-kit';
import { runCommand } from './commands.js';
import { coordinatorConfigSpec } from './config.js';
import { hashCredential, openIdentityStore } from './identity/identity-store.js';
import { makeTempDir } from './test-support/test-coordinator.js';
import { openKeyring } from './tokens/keyring.js';

const dirs: string[] = [];
afterEach(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

/** Parses `titan-coordinator <argv> --data-dir <temp>` and runs its subcommand. */
function run(argv: string[]) {
  const dataDir = makeTempDir();
  dirs.push(dataDir);
  const config = loadConfig(coordinatorConfigSpec(), { name: 'titan-coordinator', argv: [...argv, '--data-dir', dataDir], env: {}, allowPositionals: true });
  return { dataDir, result: () => runCommand(config, config.positionals) };
}

describe('titan-coordinator subcommands', () => {
  it('starts the coordinator (no result) when no subcommand is given', async () => {
    await expect(run([]).result()).resolves.toBeUndefined();
  });

  it('rotate-key writes a new current key and names the previous one', async () => {
    const { dataDir, result } = run(['rotate-key']);
    const before = await openKeyring({ dataDir, tokenTtlMs: 300_000 });
    const previous = before.current().kid;
    before.close();
    const r = await result();
    expect(r).toMatchObject({ exitCode: 0, output: { msg: 'rotated signing key', previousKid: previous, dataDir } });
    const after = await openKeyring({ dataDir, tokenTtlMs: 300_000 });
    expect(after.current().kid).toBe(r?.output.kid);
    expect(after.current().kid).not.toBe(previous);
    after.close();
  });

  it('forget-agent releases a bound id (exit 0) and says so when the id was not bound (exit 1)', async () => {
    const { dataDir, result } = run(['forget-agent', 'gpu-1']);
    const store = openIdentityStore({ dataDir });
    store.bindOrVerify('gpu-1', hashCredential('c'.repeat(43)));
    store.close();
    await expect(result()).resolves.toMatchObject({ exitCode: 0, output: { agentId: 'gpu-1', forgotten: true } });
    await expect(result()).resolves.toMatchObject({ exitCode: 1, output: { agentId: 'gpu-1', forgotten: false, msg: 'agent id was not bound' } });
  });

  it.each([
    [['rotate-key', 'extra'], /unexpected arguments after rotate-key: extra/],
    [['forget-agent'], /forget-agent needs exactly one agent id .* got: nothing/],
    [['forget-agent', 'a', 'b'], /got: a b/],
    [['forget-agent', 'bad id!'], /got: bad id!/],
    [['launch'], /unknown command "launch"/],
  ])('refuses %j with a ConfigError naming the problem (exit 2)', async (argv, message) => {
    const err = await run(argv)
      .result()
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as Error).message).toMatch(message);
  });
});

import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from '@jest/globals';
import { startAgent, type RunningAgent } from '../agent.js';
import { AgentConfigError } from '../errors.js';
import { startFakeCoordinator } from '../test-support/fake-coordinator.js';
import { createFakeEngine } from '../test-support/fake-engine.js';
import { CREDENTIAL_FILE, loadAgentCredential } from './agent-credential.js';

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!();
});

function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'titan-agent-cred-'));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

describe('agent credential', () => {
  it('is generated once into <dataDir>/agent-credential (0600, nothing else left behind) and reused after', async () => {
    const dir = tempDir();
    const first = await loadAgentCredential(dir);
    expect(first).toMatchObject({ source: 'generated', file: join(dir, CREDENTIAL_FILE) });
    expect(first.value).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(statSync(join(dir, CREDENTIAL_FILE)).mode & 0o777).toBe(0o600);
    expect(readdirSync(dir)).toEqual([CREDENTIAL_FILE]);
    const again = await loadAgentCredential(dir);
    expect(again).toMatchObject({ source: 'file', value: first.value });
  });

  it('lives in memory without a data dir (a new one each start)', async () => {
    const a = await loadAgentCredential(undefined);
    const b = await loadAgentCredential(undefined);
    expect(a.source).toBe('memory');
    expect(a.value).not.toBe(b.value);
  });

  it('refuses a file that is not a credential, naming it, and never overwrites it', async () => {
    const dir = tempDir();
    writeFileSync(join(dir, CREDENTIAL_FILE), 'short\n');
    const err = await loadAgentCredential(dir).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(AgentConfigError);
    expect((err as Error).message).toContain(join(dir, CREDENTIAL_FILE));
    expect((err as Error).message).toMatch(/forget-agent/);
    expect(readFileSync(join(dir, CREDENTIAL_FILE), 'utf8')).toBe('short\n');
  });

  it('is sent on RegisterAgent, on the first update of each health stream and on DeregisterAgent, and survives a restart', async () => {
    const coordinator = await startFakeCoordinator();
    cleanups.push(() => coordinator.stop());
    const dir = tempDir();
    const start = (): Promise<RunningAgent> =>
      startAgent({
        agentId: 'cred-agent',
        host: '127.0.0.1',
        port: 0,
        coordinator: coordinator.address,
        joinToken: 'join-secret',
        engine: createFakeEngine({ models: ['fake-model'] }),
        dataDir: dir,
        heartbeatIntervalMs: 100,
        registerBackoffInitialMs: 50,
        registerBackoffMaxMs: 200,
        drainTimeoutMs: 1000,
        nvidiaSmiPath: '/nonexistent/nvidia-smi',
        logLevel: 'silent',
      });
    const first = await start();
    const credential = readFileSync(join(dir, CREDENTIAL_FILE), 'utf8').trim();
    await coordinator.waitFor(() => coordinator.updates.length >= 2);
    expect(coordinator.registrations[0]?.agentCredential).toBe(credential);
    expect(coordinator.updates[0]?.agentCredential).toBe(credential);
    expect(coordinator.updates[1]?.agentCredential).toBe('');
    await first.stop();
    expect(coordinator.deregistrations[0]).toMatchObject({ agentId: 'cred-agent', agentCredential: credential });

    const second = await start();
    cleanups.push(() => second.stop());
    await coordinator.waitFor(() => coordinator.registrations.length === 2);
    expect(coordinator.registrations[1]?.agentCredential).toBe(credential);
    expect(coordinator.refused).toBe(0);
  });
});

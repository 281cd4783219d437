import { afterEach, describe, expect, it } from '@jest/globals';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AgentIdentityError, SchemaVersionError } from '../errors.js';
import {
  DEFAULT_EXTERNAL_CHANGE_CHECK_MS,
  hashCredential,
  IDENTITIES_SCHEMA_VERSION,
  openIdentityStore,
  type IdentityStore,
  type IdentityStoreOptions,
} from './identity-store.js';

const dirs: string[] = [];
const stores: IdentityStore[] = [];
afterEach(() => {
  for (const s of stores.splice(0)) s.close();
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

/** Two stores on one data dir: the running coordinator's and an operator's (`forget-agent`, another connection). */
function twoConnections(coordinatorOptions: Partial<IdentityStoreOptions> = { externalChangeCheckMs: 0 }): {
  coordinator: IdentityStore;
  operator: IdentityStore;
} {
  const dataDir = mkdtempSync(join(tmpdir(), 'titan-identity-'));
  dirs.push(dataDir);
  const coordinator = openIdentityStore({ dataDir, ...coordinatorOptions });
  const operator = openIdentityStore({ dataDir });
  stores.push(coordinator, operator);
  return { coordinator, operator };
}

const A = hashCredential('a'.repeat(43));
const B = hashCredential('b'.repeat(43));

describe('identity store cache', () => {
  it('answers repeated checks from memory and still sees a forget-agent from another connection at once', () => {
    const { coordinator, operator } = twoConnections();
    expect(coordinator.bindOrVerify('gpu-1', A)).toBe('bound');
    for (let i = 0; i < 3; i++) expect(coordinator.verify('gpu-1', A)).toBe(true);
    expect(operator.forget('gpu-1')).toBe(true);
    // The very next health update of the old agent is told to register again.
    expect(coordinator.check('gpu-1', A)).toBe('unbound');
    expect(coordinator.verify('gpu-1', A)).toBe(false);
  });

  it('by default asks SQLite at most every 50 ms: a forget-agent from another connection is seen once that passed', () => {
    let now = 1_000;
    const { coordinator, operator } = twoConnections({ now: () => now });
    expect(DEFAULT_EXTERNAL_CHANGE_CHECK_MS).toBe(50);
    expect(coordinator.bindOrVerify('gpu-9', A)).toBe('bound');
    expect(operator.forget('gpu-9')).toBe(true);
    now += 49;
    expect(coordinator.check('gpu-9', A)).toBe('match'); // from memory, inside the window
    now += 1;
    expect(coordinator.check('gpu-9', A)).toBe('unbound');
    // Binding always looks first, whatever the window.
    expect(operator.bindOrVerify('gpu-9', B)).toBe('bound');
    expect(() => coordinator.bindOrVerify('gpu-9', A)).toThrow(AgentIdentityError);
  });

  it('sees a binding made by another connection after a cached "unbound" (a replacement machine takes the id)', () => {
    const { coordinator, operator } = twoConnections();
    expect(coordinator.check('gpu-2', A)).toBe('unbound');
    expect(operator.bindOrVerify('gpu-2', B)).toBe('bound');
    expect(coordinator.check('gpu-2', A)).toBe('mismatch');
    expect(() => coordinator.verify('gpu-2', A)).toThrow(AgentIdentityError);
    expect(() => coordinator.bindOrVerify('gpu-2', A)).toThrow(AgentIdentityError);
    expect(coordinator.bindOrVerify('gpu-2', B)).toBe('verified');
  });

  it('keeps its own writes (bind, verified endpoint, forget) and another connection sees them', () => {
    const { coordinator, operator } = twoConnections();
    expect(coordinator.bindOrVerify('gpu-3', A)).toBe('bound');
    expect(coordinator.verifiedEndpoint('gpu-3')).toBeUndefined();
    coordinator.rememberVerifiedEndpoint('gpu-3', '10.0.0.3:50051');
    expect(coordinator.verifiedEndpoint('gpu-3')).toBe('10.0.0.3:50051');
    expect(operator.verifiedEndpoint('gpu-3')).toBe('10.0.0.3:50051');
    operator.rememberVerifiedEndpoint('gpu-3', '10.0.0.4:50051');
    expect(coordinator.verifiedEndpoint('gpu-3')).toBe('10.0.0.4:50051');
    expect(coordinator.forget('gpu-3')).toBe(true);
    expect(coordinator.check('gpu-3', A)).toBe('unbound');
    expect(operator.check('gpu-3', A)).toBe('unbound');
  });
});

describe('identity store schema version (SQLite)', () => {
  it('records its version and refuses a database written by a newer coordinator, naming both versions', async () => {
    const { default: Database } = await import('better-sqlite3');
    const dataDir = mkdtempSync(join(tmpdir(), 'titan-identity-'));
    dirs.push(dataDir);
    openIdentityStore({ dataDir }).close();
    const db = new Database(join(dataDir, 'coordinator.db'));
    expect(db.prepare("SELECT version FROM schema_versions WHERE schema = 'agent_identities'").get()).toEqual({ version: IDENTITIES_SCHEMA_VERSION });
    db.prepare("UPDATE schema_versions SET version = 99 WHERE schema = 'agent_identities'").run();
    db.close();
    expect(() => openIdentityStore({ dataDir })).toThrow(SchemaVersionError);
    expect(() => openIdentityStore({ dataDir })).toThrow(
      new RegExp(`agent_identities schema is version 99, newer than this coordinator's ${IDENTITIES_SCHEMA_VERSION}: .*upgrade the coordinator`),
    );
  });
});

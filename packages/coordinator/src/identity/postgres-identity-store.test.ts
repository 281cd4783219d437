import { afterEach, beforeEach, describe, expect, it } from '@jest/globals';
import { AgentIdentityError } from '../errors.js';
import { openPostgresStore, type PostgresStore } from '../store/postgres-store.js';
import { waitFor } from '../test-support/test-coordinator.js';
import { createTestDatabase, postgresAvailable, type TestDatabase } from '@titancompute/test-support/postgres';
import { hashCredential } from './identity-store.js';
import { forgetPostgresAgent, openPostgresIdentityStore, type PostgresIdentityStore } from './postgres-identity-store.js';

const pgUp = await postgresAvailable('coordinator PostgreSQL identities');
const describePg = pgUp ? describe : () => undefined;

const A = hashCredential('a'.repeat(43));
const B = hashCredential('b'.repeat(43));

describePg('agent identities on PostgreSQL, shared by replicas', () => {
  let db: TestDatabase;
  const stores: PostgresStore[] = [];
  const identities: PostgresIdentityStore[] = [];
  const open = async () => {
    const store = await openPostgresStore({ url: db.url });
    stores.push(store);
    const ids = await openPostgresIdentityStore({ store });
    identities.push(ids);
    return { store, ids };
  };
  beforeEach(async () => {
    db = await createTestDatabase();
  });
  afterEach(async () => {
    for (const i of identities.splice(0)) {
      i.close();
      await i.flush();
    }
    for (const s of stores.splice(0)) await s.close();
    await db.drop();
  });

  it('an id bound through one replica is refused to another credential on the others; forget-agent releases it everywhere', async () => {
    const one = await open();
    const two = await open();
    expect(one.ids.bindOrVerify('gpu-1', A)).toBe('bound');
    await one.ids.flush();
    await waitFor(() => two.ids.check('gpu-1', A) === 'match', 5000);
    expect(() => two.ids.bindOrVerify('gpu-1', B)).toThrow(AgentIdentityError);
    expect(two.ids.bindOrVerify('gpu-1', A)).toBe('verified');
    one.ids.rememberVerifiedEndpoint('gpu-1', '10.0.0.1:50052');
    await waitFor(() => two.ids.verifiedEndpoint('gpu-1') === '10.0.0.1:50052', 5000);
    // A new replica reads the bindings at start.
    expect((await open()).ids.list().map((b) => b.agentId)).toEqual(['gpu-1']);
    // The operator's forget-agent (another process) reaches every running replica.
    expect(await forgetPostgresAgent(one.store, 'gpu-1')).toBe(true);
    await waitFor(() => one.ids.check('gpu-1', A) === 'unbound' && two.ids.check('gpu-1', A) === 'unbound', 5000);
    expect(two.ids.bindOrVerify('gpu-1', B)).toBe('bound');
    expect(await forgetPostgresAgent(one.store, 'nobody')).toBe(false);
  });

  it('two replicas binding one id to different credentials at once: the database keeps one, both replicas agree on it', async () => {
    const one = await open();
    const two = await open();
    expect(one.ids.bindOrVerify('gpu-2', A)).toBe('bound');
    expect(two.ids.bindOrVerify('gpu-2', B)).toBe('bound');
    await Promise.all([one.ids.flush(), two.ids.flush()]);
    const stored = (await db.query("SELECT credential_sha256 FROM agent_identities WHERE agent_id = 'gpu-2'")).rows[0].credential_sha256 as Buffer;
    const winner = stored.equals(A) ? A : B;
    await waitFor(() => one.ids.check('gpu-2', winner) === 'match' && two.ids.check('gpu-2', winner) === 'match', 5000);
  });
});

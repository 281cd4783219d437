import { rmSync } from 'node:fs';
import { afterEach, beforeEach, describe, expect, it } from '@jest/globals';
import { KeyringSecretError } from '../errors.js';
import { openPostgresStore, type PostgresStore } from '../store/postgres-store.js';
import { makeTempDir, startTestCoordinator, waitFor } from '../test-support/test-coordinator.js';
import { createTestDatabase, postgresAvailable, testKeyringSecret, type TestDatabase } from '@titancompute/test-support/postgres';
import type { Keyring } from './keyring.js';
import { parseKeyringSecret } from './keyring-secret.js';
import { openPostgresKeyring, rotatePostgresKeyring } from './postgres-keyring.js';

const pgUp = await postgresAvailable('coordinator PostgreSQL keyring');
const describePg = pgUp ? describe : () => undefined;

describePg('the signing keyring on PostgreSQL', () => {
  let db: TestDatabase;
  let secret: Buffer;
  const stores: PostgresStore[] = [];
  const keyrings: Keyring[] = [];
  const open = async (s: Buffer = secret) => {
    const store = await openPostgresStore({ url: db.url });
    stores.push(store);
    const keyring = await openPostgresKeyring({ store, secret: s, tokenTtlMs: 300_000 });
    keyrings.push(keyring);
    return { store, keyring };
  };
  beforeEach(async () => {
    db = await createTestDatabase();
    secret = parseKeyringSecret(testKeyringSecret());
  });
  afterEach(async () => {
    for (const k of keyrings.splice(0)) k.close();
    for (const s of stores.splice(0)) await s.close();
    await db.drop();
  });

  it('replicas starting at once share one key: the first creates it, the others read it; its private key is sealed at rest', async () => {
    const opened = await Promise.all([open(), open(), open()]);
    const kids = new Set(opened.map((o) => o.keyring.current().kid));
    expect(kids.size).toBe(1);
    const rows = await db.query('SELECT kid, private_key_sealed FROM keyring_keys');
    expect(rows.rows).toHaveLength(1);
    const sealed = (rows.rows[0] as { private_key_sealed: Buffer }).private_key_sealed;
    expect(sealed.includes(Buffer.from('PRIVATE KEY'))).toBe(false);
    expect(sealed.includes(Buffer.from('-----BEGIN'))).toBe(false);
  });

  it('a wrong secret is a KeyringSecretError naming TITAN_KEYRING_SECRET, not an OpenSSL error; rotate-key refuses it too', async () => {
    await open();
    const other = parseKeyringSecret(testKeyringSecret());
    const store = await openPostgresStore({ url: db.url });
    stores.push(store);
    await expect(openPostgresKeyring({ store, secret: other, tokenTtlMs: 300_000 })).rejects.toThrow(KeyringSecretError);
    await expect(openPostgresKeyring({ store, secret: other, tokenTtlMs: 300_000 })).rejects.toThrow(
      /TITAN_KEYRING_SECRET does not decrypt signing key \S+ in postgres:.*not the secret this keyring was created with/,
    );
    await expect(rotatePostgresKeyring({ store, secret: other, tokenTtlMs: 300_000 })).rejects.toMatchObject({ problem: 'wrong' });
    expect((await db.query('SELECT count(*)::int AS n FROM keyring_keys')).rows[0].n).toBe(1);
  });

  it('a rotation reaches every watching replica at once: new key current, the old one still published', async () => {
    const a = await open();
    const b = await open();
    // A long interval: only LISTEN/NOTIFY can deliver the rotation within the wait.
    a.keyring.watch(3_600_000);
    b.keyring.watch(3_600_000);
    const before = a.keyring.current().kid;
    const { kid, previousKid } = await rotatePostgresKeyring({ store: b.store, secret, tokenTtlMs: 300_000 });
    expect(previousKid).toBe(before);
    await waitFor(() => a.keyring.current().kid === kid && b.keyring.current().kid === kid, 5000);
    const published = a.keyring.publishedKeys();
    expect(published[0]).toMatchObject({ keyId: kid, retireAt: 0 });
    expect(published.find((k) => k.keyId === before)?.retireAt).toBeGreaterThan(Date.now() / 1000 + 300);
  });

  it('startCoordinator --store postgres: without a secret, with a malformed or a wrong one, it refuses to start and says why', async () => {
    await open();
    const dataDir = makeTempDir();
    try {
      const start = (keyringSecret: string | undefined) => startTestCoordinator({ dataDir, store: 'postgres', postgresUrl: db.url, keyringSecret });
      await expect(start(undefined)).rejects.toMatchObject({ name: 'KeyringSecretError', problem: 'missing' });
      await expect(start('not a secret')).rejects.toMatchObject({ problem: 'malformed' });
      await expect(start(testKeyringSecret())).rejects.toThrow(/TITAN_KEYRING_SECRET does not decrypt/);
      await expect(startTestCoordinator({ dataDir, store: 'postgres', keyringSecret: testKeyringSecret() })).rejects.toThrow(
        /--postgres-url \(TITAN_POSTGRES_URL\)/,
      );
    } finally {
      rmSync(dataDir, { recursive: true, force: true });
    }
  });
});

import { createPrivateKey, type KeyObject } from 'node:crypto';
import type { Logger } from '@titancompute/server-kit';
import { CoordinatorError, KeyringError } from '../errors.js';
import { STORE_CHANNELS, type PostgresStore } from '../store/postgres-store.js';
import { generateStoredKey, keepSignedKeys, noteSignedUntil, publishKeys, TOKEN_ALGORITHM, type Keyring, type SigningKey, type StoredKey } from './keyring.js';
import { openSealedPrivateKey, sealPrivateKey } from './keyring-secret.js';

/**
 * Extra time (s) a rotated-out key stays published beyond one token TTL on PostgreSQL: a replica
 * that has not yet picked the rotation up (LISTEN/NOTIFY at once, else its next re-read) still
 * signs with the old key, and those tokens must verify on every agent until they expire.
 */
export const ROTATION_GRACE_S = 60;

/** Options of {@link openPostgresKeyring} and {@link rotatePostgresKeyring}. */
export interface PostgresKeyringOptions {
  store: PostgresStore;
  /** The AES-256-GCM key that seals private keys (`parseKeyringSecret`). */
  secret: Buffer;
  /** Session token lifetime: a rotated-out key stays published this long (plus {@link ROTATION_GRACE_S}). */
  tokenTtlMs: number;
  /** Clock (ms). Default `Date.now`. */
  now?: () => number;
  /** Where failed re-reads are logged. */
  logger?: Logger | undefined;
}

interface KeyRow {
  kid: string;
  algorithm: string;
  public_key_pem: string;
  private_key_sealed: Buffer;
  created_at: string;
  retire_at: string;
}

interface Loaded {
  current: SigningKey;
  stored: StoredKey[];
  /** kid:retireAt of every row: what a re-read compares. */
  stamp: string;
}

/** Thrown inside the creation transaction when another replica created the keyring first. */
class LostCreationRace extends Error {}

const where = (store: PostgresStore) => `${store.location} (keyring_keys)`;

/** The current kid and the keys still publishable at `nowS`, as stored (private keys sealed). */
async function readRows(store: PostgresStore, nowS: number): Promise<{ currentKid: string | undefined; rows: KeyRow[] }> {
  const current = await store.pool.query<{ kid: string }>('SELECT kid FROM keyring_current WHERE id = 1');
  const rows = await store.pool.query<KeyRow>(
    'SELECT kid, algorithm, public_key_pem, private_key_sealed, created_at, retire_at FROM keyring_keys WHERE retire_at = 0 OR retire_at > $1 ORDER BY created_at DESC, kid',
    [nowS],
  );
  return { currentKid: current.rows[0]?.kid, rows: rows.rows };
}

/** Inserts a fresh current key unless a keyring exists (the first replica wins; the others read its key). */
async function createIfMissing(options: PostgresKeyringOptions, nowS: number): Promise<void> {
  const fresh = await generateStoredKey(nowS);
  try {
    await options.store.transaction(async (client) => {
      await client.query(
        'INSERT INTO keyring_keys (kid, algorithm, public_key_pem, private_key_sealed, created_at, retire_at) VALUES ($1, $2, $3, $4, $5, 0) ON CONFLICT (kid) DO NOTHING',
        [fresh.kid, fresh.algorithm, fresh.publicKeyPem, sealPrivateKey(options.secret, fresh.kid, fresh.privateKeyPem), nowS],
      );
      const won = await client.query('INSERT INTO keyring_current (id, kid) VALUES (1, $1) ON CONFLICT (id) DO NOTHING RETURNING kid', [fresh.kid]);
      if (won.rowCount !== 1) throw new LostCreationRace();
    });
  } catch (err) {
    if (!(err instanceof LostCreationRace)) throw err;
  }
}

/** Decrypts the current key and shapes the rows as the file keyring keeps them. */
function toLoaded(options: PostgresKeyringOptions, currentKid: string, rows: KeyRow[]): Loaded {
  const currentRow = rows.find((r) => r.kid === currentKid);
  if (!currentRow) throw new KeyringError(`keyring in ${where(options.store)}: the current key ${currentKid} is missing`, { kid: currentKid });
  const pem = openSealedPrivateKey(options.secret, currentRow.kid, currentRow.private_key_sealed, where(options.store));
  let privateKey: KeyObject;
  try {
    privateKey = createPrivateKey({ key: pem, format: 'pem' });
    if (privateKey.asymmetricKeyType !== 'ed25519') throw new Error(`expected an Ed25519 key, got ${privateKey.asymmetricKeyType ?? 'a symmetric key'}`);
  } catch (cause) {
    throw new KeyringError(`keyring in ${where(options.store)}: key ${currentRow.kid} is not a valid Ed25519 key`, { kid: currentRow.kid }, { cause });
  }
  return {
    ...toLoadedPublic(currentKid, rows),
    current: { kid: currentRow.kid, privateKey, publicKeyPem: currentRow.public_key_pem },
    stamp: stampOf(currentKid, rows),
  };
}

/** What a re-read compares: the current kid and every row's kid and retirement. */
const stampOf = (currentKid: string, rows: KeyRow[]) => `${currentKid}|${rows.map((r) => `${r.kid}:${r.retire_at}`).join(',')}`;

/**
 * Opens the keyring shared by every replica in PostgreSQL (`keyring_keys`, `keyring_current`):
 * the first replica to start creates the key (INSERT … ON CONFLICT DO NOTHING, then every
 * replica reads the winner's), the private keys are sealed with AES-256-GCM under the keyring
 * secret. `watch()` re-reads on LISTEN/NOTIFY at once after a rotation, and every `intervalMs`
 * as a fallback, so every replica signs with the new key and publishes the old one (GetPublicKey)
 * while tokens it signed may still be valid. Throws `KeyringSecretError` when the secret does
 * not decrypt the current key.
 *
 * @example
 * ```ts
 * const keyring = await openPostgresKeyring({ store, secret: parseKeyringSecret(env.TITAN_KEYRING_SECRET), tokenTtlMs: 300_000 });
 * keyring.watch();
 * ```
 */
export async function openPostgresKeyring(options: PostgresKeyringOptions): Promise<Keyring> {
  const now = options.now ?? Date.now;
  const nowS = () => Math.floor(now() / 1000);
  const load = async (): Promise<Loaded> => {
    let { currentKid, rows } = await readRows(options.store, nowS());
    if (currentKid === undefined) {
      await createIfMissing(options, nowS());
      ({ currentKid, rows } = await readRows(options.store, nowS()));
    }
    if (currentKid === undefined) throw new KeyringError(`keyring in ${where(options.store)} has no current key after it was created`, {});
    return toLoaded(options, currentKid, rows);
  };
  let state: Loaded;
  try {
    state = await load();
  } catch (cause) {
    if (cause instanceof CoordinatorError) throw cause;
    throw new KeyringError(`cannot open the keyring in ${where(options.store)}: ${(cause as Error).message}`, {}, { cause });
  }
  /** kid → latest exp (unix s) of a token this process signed with it. */
  const signedUntil = new Map<string, number>();
  let timer: NodeJS.Timeout | undefined;
  let unlisten: (() => void) | undefined;
  let reloading: Promise<boolean> | undefined;

  const keyring: Keyring = {
    file: where(options.store),
    current: () => state.current,
    publishedKeys: () => publishKeys(state.stored, state.current.kid, signedUntil, nowS()),
    noteSigned: (kid, expSeconds) => noteSignedUntil(signedUntil, kid, expSeconds),
    reload() {
      reloading ??= (async () => {
        try {
          const { currentKid, rows } = await readRows(options.store, nowS());
          if (currentKid === undefined) return false;
          const stamp = stampOf(currentKid, rows);
          if (stamp === state.stamp) return false;
          const next =
            currentKid === state.current.kid ? { ...toLoadedPublic(currentKid, rows), current: state.current, stamp } : toLoaded(options, currentKid, rows);
          // Keep publishing keys this process signed with even if the table dropped them.
          keepSignedKeys(next.stored, state.stored, signedUntil, nowS());
          state = next;
          return true;
        } finally {
          reloading = undefined;
        }
      })();
      return reloading;
    },
    watch(intervalMs = 1000) {
      if (timer) return;
      const reread = () =>
        void keyring.reload().catch((err: unknown) => options.logger?.error({ err, keyring: keyring.file }, 'could not re-read the keyring from PostgreSQL'));
      timer = setInterval(reread, intervalMs);
      timer.unref();
      unlisten = options.store.listen(STORE_CHANNELS.keyring, reread);
    },
    close() {
      if (timer) clearInterval(timer);
      timer = undefined;
      unlisten?.();
      unlisten = undefined;
    },
  };
  return keyring;
}

/** The published half of {@link toLoaded}: public keys and retirements (private keys stay sealed in the table). */
function toLoadedPublic(currentKid: string, rows: KeyRow[]): Omit<Loaded, 'current' | 'stamp'> {
  return {
    stored: rows.map((r) => ({
      kid: r.kid,
      algorithm: TOKEN_ALGORITHM,
      publicKeyPem: r.public_key_pem,
      // Never kept in memory beyond the current key's KeyObject.
      privateKeyPem: '-',
      createdAt: Number(r.created_at),
      retireAt: r.kid === currentKid ? 0 : Number(r.retire_at),
    })),
  };
}

/**
 * Rotates the keyring in PostgreSQL (`titan-coordinator rotate-key --store postgres`): in one
 * transaction a new sealed key becomes current and the old current one gets `retire_at = now +
 * token TTL + {@link ROTATION_GRACE_S}`; keys past their retirement are deleted; a NOTIFY tells every
 * replica, which signs with the new key from then on. The secret must open the current key
 * (`KeyringSecretError` otherwise: a wrong secret would split the keyring). Returns the new key id.
 *
 * @example
 * ```ts
 * const { kid } = await rotatePostgresKeyring({ store, secret, tokenTtlMs: 300_000 });
 * ```
 */
export async function rotatePostgresKeyring(options: PostgresKeyringOptions): Promise<{ kid: string; previousKid: string | undefined }> {
  const now = options.now ?? Date.now;
  const nowS = Math.floor(now() / 1000);
  const fresh = await generateStoredKey(nowS);
  const retireAt = nowS + Math.ceil(options.tokenTtlMs / 1000) + ROTATION_GRACE_S;
  const sealed = sealPrivateKey(options.secret, fresh.kid, fresh.privateKeyPem);
  return options.store.transaction(async (client) => {
    const current = await client.query<{ kid: string; private_key_sealed: Buffer }>(
      'SELECT c.kid, k.private_key_sealed FROM keyring_current c JOIN keyring_keys k ON k.kid = c.kid WHERE c.id = 1 FOR UPDATE OF c',
    );
    const previous = current.rows[0];
    // The same secret must seal every key: refuse to rotate with another one.
    if (previous) openSealedPrivateKey(options.secret, previous.kid, previous.private_key_sealed, where(options.store));
    await client.query('INSERT INTO keyring_keys (kid, algorithm, public_key_pem, private_key_sealed, created_at, retire_at) VALUES ($1, $2, $3, $4, $5, 0)', [
      fresh.kid,
      fresh.algorithm,
      fresh.publicKeyPem,
      sealed,
      nowS,
    ]);
    if (previous) {
      await client.query('UPDATE keyring_keys SET retire_at = $2 WHERE kid = $1', [previous.kid, retireAt]);
      await client.query('UPDATE keyring_current SET kid = $1 WHERE id = 1', [fresh.kid]);
    } else {
      await client.query('INSERT INTO keyring_current (id, kid) VALUES (1, $1)', [fresh.kid]);
    }
    await client.query('DELETE FROM keyring_keys WHERE retire_at <> 0 AND retire_at <= $1', [nowS]);
    await client.query('SELECT pg_notify($1, $2)', [STORE_CHANNELS.keyring, fresh.kid]);
    return { kid: fresh.kid, previousKid: previous?.kid };
  });
}

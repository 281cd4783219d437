import { createPrivateKey, type KeyObject } from 'node:crypto';
import { mkdir, readFile, rename, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { calculateJwkThumbprint, exportJWK, exportPKCS8, exportSPKI, generateKeyPair, importSPKI, type CryptoKey } from 'jose';
import { z } from 'zod';
import { SESSION_TOKEN_ALGORITHM } from '@titancompute/protocol';
import { KeyringError } from '../errors.js';

/** Signing algorithm of session tokens (the contract's `SESSION_TOKEN_ALGORITHM`). */
export const TOKEN_ALGORITHM = SESSION_TOKEN_ALGORITHM;

const storedKeySchema = z.object({
  kid: z.string().min(1),
  algorithm: z.literal(TOKEN_ALGORITHM),
  publicKeyPem: z.string().min(1),
  privateKeyPem: z.string().min(1),
  /** Unix seconds. */
  createdAt: z.number(),
  /** Unix seconds after which no token this key signed is valid; 0 for the current key. */
  retireAt: z.number(),
});
const keyringFileSchema = z.object({ version: z.literal(1), keys: z.array(storedKeySchema).min(1) });

/** One key as stored in `<data-dir>/keys/keyring.json`. */
export type StoredKey = z.infer<typeof storedKeySchema>;

/** A public key that verifies tokens (the shape of `PublicKeyResponse.keys`). */
export interface PublishedKey {
  keyId: string;
  publicKeyPem: string;
  algorithm: string;
  /** Unix seconds; 0 for the current key. */
  retireAt: number;
}

/** The key the coordinator signs with now. */
export interface SigningKey {
  readonly kid: string;
  /** The Ed25519 private key, imported once per (re)load: `crypto.sign` uses it as is. */
  readonly privateKey: KeyObject;
  readonly publicKeyPem: string;
}

/** Options of {@link openKeyring} and {@link rotateKeyring}. */
export interface KeyringOptions {
  /** The service data directory; keys live in `<dataDir>/keys/keyring.json`. */
  dataDir: string;
  /** Session token lifetime: a rotated-out key stays published this long. */
  tokenTtlMs: number;
  /** Clock (ms). Default `Date.now`. */
  now?: () => number;
}

/**
 * The coordinator's persisted Ed25519 keyring: the current signing key plus rotated-out
 * public keys kept until every token they signed has expired.
 */
export interface Keyring {
  /** The current signing key. */
  current(): SigningKey;
  /** Every key that verifies a still-valid token, current first (retired ones dropped). */
  publishedKeys(): PublishedKey[];
  /** Records that a token signed by `kid` expires at `expSeconds` (keeps the key published that long). */
  noteSigned(kid: string, expSeconds: number): void;
  /** Re-reads the keyring if it changed (on disk or in PostgreSQL, e.g. after `titan-coordinator rotate-key`). Returns true when it did. */
  reload(): Promise<boolean>;
  /** Re-reads on a timer (default every 1 s). */
  watch(intervalMs?: number): void;
  /** Stops watching. */
  close(): void;
  /**
   * Where the keyring lives: the keyring file (`--store sqlite`), or the PostgreSQL URL without
   * its password and the table (`--store postgres`).
   */
  readonly file: string;
}

/**
 * The keys to publish (GetPublicKey) at `nowS`: the current key first, then every other stored
 * key until it retires — or, if later, until the last token this process signed with it expires
 * (`signedUntil`: key id → unix seconds). Shared by the file keyring and the PostgreSQL one.
 */
export function publishKeys(stored: readonly StoredKey[], currentKid: string, signedUntil: ReadonlyMap<string, number>, nowS: number): PublishedKey[] {
  const out: PublishedKey[] = [];
  for (const k of stored) {
    const isCurrent = k.kid === currentKid;
    const retireAt = isCurrent ? 0 : Math.max(k.retireAt, signedUntil.get(k.kid) ?? 0);
    if (!isCurrent && retireAt <= nowS) continue;
    const entry = { keyId: k.kid, publicKeyPem: k.publicKeyPem, algorithm: k.algorithm, retireAt };
    if (isCurrent) out.unshift(entry);
    else out.push(entry);
  }
  return out;
}

/**
 * Adds to `next` (a keyring just re-read) the keys of `previous` it no longer holds but that
 * signed tokens still alive at `nowS`, retiring when the last of them expires: agents must still
 * find them with GetPublicKey.
 */
export function keepSignedKeys(next: StoredKey[], previous: readonly StoredKey[], signedUntil: ReadonlyMap<string, number>, nowS: number): void {
  const known = new Set(next.map((k) => k.kid));
  for (const k of previous) {
    const until = signedUntil.get(k.kid) ?? 0;
    if (!known.has(k.kid) && until > nowS) next.push({ ...k, retireAt: until });
  }
}

/** Records that a token signed with `kid` lives until `expSeconds` (the latest such time per key is kept). */
export function noteSignedUntil(signedUntil: Map<string, number>, kid: string, expSeconds: number): void {
  if ((signedUntil.get(kid) ?? 0) < expSeconds) signedUntil.set(kid, expSeconds);
}

/** Path of the keyring file in a data directory. */
export function keyringPath(dataDir: string): string {
  return join(dataDir, 'keys', 'keyring.json');
}

/** A fresh Ed25519 key pair as stored (kid: the first 16 characters of its JWK thumbprint), current (`retireAt` 0). */
export async function generateStoredKey(nowS: number): Promise<StoredKey> {
  const { privateKey, publicKey } = await generateKeyPair(TOKEN_ALGORITHM, { extractable: true, crv: 'Ed25519' });
  const thumbprint = await calculateJwkThumbprint(await exportJWK(publicKey));
  return {
    kid: thumbprint.slice(0, 16),
    algorithm: TOKEN_ALGORITHM,
    publicKeyPem: await exportSPKI(publicKey),
    privateKeyPem: await exportPKCS8(privateKey),
    createdAt: nowS,
    retireAt: 0,
  };
}

async function readKeyringFile(file: string): Promise<StoredKey[] | undefined> {
  let raw: string;
  try {
    raw = await readFile(file, 'utf8');
  } catch (cause) {
    if ((cause as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new KeyringError(`cannot read keyring ${file}: ${(cause as Error).message}`, { file }, { cause });
  }
  let json: unknown;
  try {
    json = JSON.parse(raw);
  } catch (cause) {
    throw new KeyringError(`keyring ${file} is not valid JSON`, { file }, { cause });
  }
  const parsed = keyringFileSchema.safeParse(json);
  if (!parsed.success) throw new KeyringError(`keyring ${file} is malformed: ${parsed.error.message}`, { file });
  return parsed.data.keys;
}

async function writeKeyringFile(file: string, keys: StoredKey[]): Promise<void> {
  await mkdir(join(file, '..'), { recursive: true, mode: 0o700 });
  const tmp = `${file}.${process.pid}.${Date.now()}.tmp`;
  await writeFile(tmp, `${JSON.stringify({ version: 1, keys }, null, 2)}\n`, { mode: 0o600 });
  await rename(tmp, file);
}

/** The keys still publishable at `nowS`: the current one and those whose tokens may still be valid. */
export function dropRetired(keys: StoredKey[], nowS: number): StoredKey[] {
  return keys.filter((k) => k.retireAt === 0 || k.retireAt > nowS);
}

/**
 * Rotates the keyring in `dataDir`: a new current key is written; the old current key gets
 * `retireAt = now + token TTL` and stays published until then. A running coordinator picks
 * the change up within a second (or at once on SIGHUP). Returns the new key id.
 *
 * @example
 * ```ts
 * const kid = await rotateKeyring({ dataDir: '/var/lib/titan', tokenTtlMs: 300_000 });
 * ```
 */
export async function rotateKeyring(options: KeyringOptions): Promise<{ kid: string; previousKid: string | undefined }> {
  const now = options.now ?? Date.now;
  const nowS = Math.floor(now() / 1000);
  const file = keyringPath(options.dataDir);
  const existing = dropRetired((await readKeyringFile(file)) ?? [], nowS);
  const retireAt = nowS + Math.ceil(options.tokenTtlMs / 1000);
  const previous = existing.find((k) => k.retireAt === 0);
  const aged = existing.map((k) => (k.retireAt === 0 ? { ...k, retireAt } : k));
  const fresh = await generateStoredKey(nowS);
  await writeKeyringFile(file, [fresh, ...aged]);
  return { kid: fresh.kid, previousKid: previous?.kid };
}

interface LoadedKeys {
  current: SigningKey;
  stored: StoredKey[];
  /** File identity (inode + mtime): a rotation renames a new file into place. */
  fileStamp: string;
}

async function loadKeys(file: string, nowS: number): Promise<LoadedKeys | undefined> {
  const keys = await readKeyringFile(file);
  if (!keys) return undefined;
  const currentStored = keys.find((k) => k.retireAt === 0) ?? keys[0];
  if (!currentStored) throw new KeyringError(`keyring ${file} has no keys`, { file });
  let privateKey: KeyObject;
  try {
    privateKey = createPrivateKey({ key: currentStored.privateKeyPem, format: 'pem' });
    if (privateKey.asymmetricKeyType !== 'ed25519') throw new Error(`expected an Ed25519 key, got ${privateKey.asymmetricKeyType ?? 'a symmetric key'}`);
  } catch (cause) {
    throw new KeyringError(`keyring ${file}: key ${currentStored.kid} is not a valid Ed25519 key`, { file, kid: currentStored.kid }, { cause });
  }
  const st = await stat(file);
  return {
    current: { kid: currentStored.kid, privateKey, publicKeyPem: currentStored.publicKeyPem },
    stored: dropRetired(keys, nowS),
    fileStamp: `${st.ino}:${st.mtimeMs}:${st.size}`,
  };
}

/**
 * Opens the keyring in `<dataDir>/keys`, creating it with a fresh Ed25519 key the first time.
 * A restart reloads the same keys, so tokens issued before it stay valid.
 *
 * @example
 * ```ts
 * const keyring = await openKeyring({ dataDir: './.titan/coordinator', tokenTtlMs: 300_000 });
 * keyring.watch();
 * const { kid, privateKey } = keyring.current();
 * ```
 */
export async function openKeyring(options: KeyringOptions): Promise<Keyring> {
  const now = options.now ?? Date.now;
  const file = keyringPath(options.dataDir);
  let loaded = await loadKeys(file, Math.floor(now() / 1000));
  if (!loaded) {
    await writeKeyringFile(file, [await generateStoredKey(Math.floor(now() / 1000))]);
    loaded = await loadKeys(file, Math.floor(now() / 1000));
    if (!loaded) throw new KeyringError(`keyring ${file} vanished after it was written`, { file });
  }
  let state: LoadedKeys = loaded;
  /** kid → latest exp (unix s) of a token this process signed with it. */
  const signedUntil = new Map<string, number>();
  let timer: NodeJS.Timeout | undefined;
  let reloading: Promise<boolean> | undefined;

  const keyring: Keyring = {
    file,
    current: () => state.current,
    publishedKeys: () => publishKeys(state.stored, state.current.kid, signedUntil, Math.floor(now() / 1000)),
    noteSigned: (kid, expSeconds) => noteSignedUntil(signedUntil, kid, expSeconds),
    reload() {
      reloading ??= (async () => {
        try {
          const st = await stat(file).catch(() => undefined);
          if (!st || `${st.ino}:${st.mtimeMs}:${st.size}` === state.fileStamp) return false;
          const next = await loadKeys(file, Math.floor(now() / 1000));
          if (!next) return false;
          // Keep publishing keys this process signed with even if the file forgot them.
          keepSignedKeys(next.stored, state.stored, signedUntil, Math.floor(now() / 1000));
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
      timer = setInterval(() => void keyring.reload().catch(() => undefined), intervalMs);
      timer.unref();
    },
    close() {
      if (timer) clearInterval(timer);
      timer = undefined;
    },
  };
  return keyring;
}

/** Imports a published SPKI PEM as a verification key. */
export function importPublicKey(pem: string): Promise<CryptoKey> {
  return importSPKI(pem, TOKEN_ALGORITHM);
}

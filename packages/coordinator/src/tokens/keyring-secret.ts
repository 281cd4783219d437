import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { KeyringSecretError } from '../errors.js';

/** The environment variable (and, as `--keyring-secret`, the flag) that holds the keyring secret. */
export const KEYRING_SECRET_ENV = 'TITAN_KEYRING_SECRET';

/** Length of the keyring secret: an AES-256 key. */
export const KEYRING_SECRET_BYTES = 32;

/** Version byte of a sealed private key: AES-256-GCM, 12-byte IV, 16-byte tag, AAD = kid. */
const SEAL_V1 = 1;
const IV_BYTES = 12;
const TAG_BYTES = 16;

/** How to make a secret, for messages. */
const HOW = `32 random bytes, base64 or hex (e.g. \`openssl rand -base64 32\`); every replica needs the same one`;

/**
 * Parses the keyring secret: exactly {@link KEYRING_SECRET_BYTES} bytes written as 64 hex digits
 * or as base64 / base64url (43 or 44 characters). The bytes are the AES-256-GCM key itself (no
 * derivation: a random key needs none). Throws {@link KeyringSecretError} (`missing`,
 * `malformed`) naming `source`; the message never contains the secret.
 *
 * @example
 * ```ts
 * const secret = parseKeyringSecret(process.env.TITAN_KEYRING_SECRET);
 * ```
 */
export function parseKeyringSecret(raw: string | undefined, source: string = KEYRING_SECRET_ENV): Buffer {
  const value = raw?.trim() ?? '';
  if (value === '') {
    throw new KeyringSecretError(
      'missing',
      `${source} is required with --store postgres: it encrypts the signing keys stored in PostgreSQL; set it to ${HOW}`,
      {
        source,
      },
    );
  }
  if (/^[0-9a-fA-F]{64}$/.test(value)) return Buffer.from(value, 'hex');
  if (/^[A-Za-z0-9+/_-]{43}=?$/.test(value)) {
    const bytes = Buffer.from(value.replace(/-/g, '+').replace(/_/g, '/'), 'base64');
    if (bytes.length === KEYRING_SECRET_BYTES) return bytes;
  }
  throw new KeyringSecretError('malformed', `${source} is not ${KEYRING_SECRET_BYTES} bytes in base64 or hex (${value.length} characters); set it to ${HOW}`, {
    source,
  });
}

/**
 * Encrypts a private key PEM with the keyring secret (AES-256-GCM, a random IV, the kid as
 * associated data so a sealed key cannot be moved to another kid's row).
 */
export function sealPrivateKey(secret: Buffer, kid: string, privateKeyPem: string): Buffer {
  const iv = randomBytes(IV_BYTES);
  const cipher = createCipheriv('aes-256-gcm', secret, iv);
  cipher.setAAD(Buffer.from(kid, 'utf8'));
  const body = Buffer.concat([cipher.update(privateKeyPem, 'utf8'), cipher.final()]);
  return Buffer.concat([Buffer.from([SEAL_V1]), iv, cipher.getAuthTag(), body]);
}

/**
 * Decrypts what {@link sealPrivateKey} wrote. Throws {@link KeyringSecretError} (`wrong`) naming
 * {@link KEYRING_SECRET_ENV} when the secret does not open it (the GCM tag does not match: another
 * secret, or a damaged row) — never OpenSSL's own message.
 */
export function openSealedPrivateKey(secret: Buffer, kid: string, sealed: Buffer, where: string): string {
  // OpenSSL's own error ("unable to authenticate data") is not attached: the message says it all.
  const wrong = () =>
    new KeyringSecretError(
      'wrong',
      `${KEYRING_SECRET_ENV} does not decrypt signing key ${kid} in ${where}: it is not the secret this keyring was created with ` +
        `(every replica needs the same ${KEYRING_SECRET_ENV}), or the stored key is damaged`,
      { kid, where },
    );
  if (sealed.length < 1 + IV_BYTES + TAG_BYTES + 1 || sealed[0] !== SEAL_V1) throw wrong();
  try {
    const decipher = createDecipheriv('aes-256-gcm', secret, sealed.subarray(1, 1 + IV_BYTES));
    decipher.setAAD(Buffer.from(kid, 'utf8'));
    decipher.setAuthTag(sealed.subarray(1 + IV_BYTES, 1 + IV_BYTES + TAG_BYTES));
    return Buffer.concat([decipher.update(sealed.subarray(1 + IV_BYTES + TAG_BYTES)), decipher.final()]).toString('utf8');
  } catch {
    throw wrong();
  }
}

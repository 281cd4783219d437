import { randomBytes } from 'node:crypto';
import { describe, expect, it } from '@jest/globals';
import { KeyringSecretError } from '../errors.js';
import { openSealedPrivateKey, parseKeyringSecret, sealPrivateKey } from './keyring-secret.js';

const PEM = '-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIJ+test\n-----END PRIVATE KEY-----\n';

describe('the keyring secret', () => {
  it('is 32 bytes written as hex, base64 or base64url', () => {
    const bytes = randomBytes(32);
    expect(parseKeyringSecret(bytes.toString('hex')).equals(bytes)).toBe(true);
    expect(parseKeyringSecret(bytes.toString('base64')).equals(bytes)).toBe(true);
    expect(parseKeyringSecret(` ${bytes.toString('base64url')}\n`).equals(bytes)).toBe(true);
  });

  it('missing or malformed: a KeyringSecretError naming the variable, never echoing the value', () => {
    expect(() => parseKeyringSecret(undefined)).toThrow(KeyringSecretError);
    expect(() => parseKeyringSecret('')).toThrow(/TITAN_KEYRING_SECRET is required with --store postgres/);
    for (const bad of ['correct horse battery staple', randomBytes(16).toString('base64'), randomBytes(31).toString('hex')]) {
      let err: unknown;
      try {
        parseKeyringSecret(bad);
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(KeyringSecretError);
      expect((err as KeyringSecretError).problem).toBe('malformed');
      expect((err as Error).message).toMatch(/TITAN_KEYRING_SECRET is not 32 bytes in base64 or hex/);
      expect((err as Error).message).not.toContain(bad);
    }
  });

  it('seals a private key (AES-256-GCM, bound to its kid); another secret or kid does not open it, with a clear message', () => {
    const secret = randomBytes(32);
    const sealed = sealPrivateKey(secret, 'kid-1', PEM);
    expect(sealed.includes(Buffer.from('PRIVATE KEY'))).toBe(false);
    expect(openSealedPrivateKey(secret, 'kid-1', sealed, 'db')).toBe(PEM);
    for (const [s, kid] of [
      [randomBytes(32), 'kid-1'],
      [secret, 'kid-2'],
    ] as const) {
      let err: unknown;
      try {
        openSealedPrivateKey(s, kid, sealed, 'db');
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(KeyringSecretError);
      expect((err as KeyringSecretError).problem).toBe('wrong');
      expect((err as Error).message).toMatch(/TITAN_KEYRING_SECRET does not decrypt signing key/);
      expect((err as Error).message).not.toMatch(/authenticate data|Unsupported state/);
      expect((err as Error).cause).toBeUndefined();
    }
  });
});

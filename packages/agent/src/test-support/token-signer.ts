import { randomUUID } from 'node:crypto';
import { exportSPKI, generateKeyPair, SignJWT, type CryptoKey } from 'jose';
import type { PublicKey } from '@titancompute/protocol';

/** Claims a test token carries; every field may be overridden (undefined removes it). */
export interface TestClaims {
  iss?: string;
  aud?: string;
  sub?: string;
  jti?: string;
  model?: string;
  max_tokens?: number;
  temperature?: number;
  job_id?: string;
  /** Unix seconds. */
  iat?: number;
  nbf?: number;
  exp?: number;
  [extra: string]: unknown;
}

/** An Ed25519 key that signs session tokens like the coordinator does. */
export interface TestSigner {
  kid: string;
  publicKeyPem: string;
  /** The PublicKey message of this key. */
  publicKey(): PublicKey;
  sign(claims?: TestClaims, header?: { kid?: string | undefined }): Promise<string>;
}

/** Creates a {@link TestSigner} with a fresh key; `defaults` fill the claims of every token. */
export async function createTestSigner(defaults: TestClaims = {}, kid = `k-${randomUUID().slice(0, 8)}`): Promise<TestSigner> {
  const { privateKey, publicKey } = await generateKeyPair('EdDSA', { extractable: true });
  const publicKeyPem = await exportSPKI(publicKey as CryptoKey);
  return {
    kid,
    publicKeyPem,
    publicKey: () => ({ keyId: kid, publicKeyPem, algorithm: 'EdDSA', retireAt: 0 }),
    async sign(claims = {}, header = {}) {
      const now = Math.floor(Date.now() / 1000);
      const jobId = randomUUID();
      const all: Record<string, unknown> = {
        iss: 'titancompute-coordinator',
        sub: 'test-client',
        jti: randomUUID(),
        model: 'llama-2-tiny-random',
        max_tokens: 16,
        temperature: 0.7,
        job_id: jobId,
        client_id: 'test-client',
        iat: now,
        nbf: now,
        exp: now + 300,
        ...defaults,
        ...claims,
      };
      if (all.aud !== undefined) all.agent_id = all.aud;
      for (const k of Object.keys(all)) if (all[k] === undefined) delete all[k];
      const kidHeader = 'kid' in header ? header.kid : kid;
      return new SignJWT(all).setProtectedHeader({ alg: 'EdDSA', typ: 'JWT', ...(kidHeader ? { kid: kidHeader } : {}) }).sign(privateKey);
    },
  };
}

import { randomUUID } from 'node:crypto';
import { exportSPKI, generateKeyPair, SignJWT, type CryptoKey } from 'jose';
import { SESSION_TOKEN_ALGORITHM, SESSION_TOKEN_CLAIMS, SESSION_TOKEN_ISSUER, SESSION_TOKEN_TYPE, type PublicKey } from '@titancompute/protocol';

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
  /** Engine parameters granted (StreamRequest.options must be these or empty). */
  parameters?: Record<string, string>;
  /** base64url SHA-256 of the prompt (`promptSha256(prompt)`). */
  prompt_sha256?: string;
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

/**
 * Creates a {@link TestSigner} with a fresh key; `defaults` fill the claims of every token. The
 * header, issuer and claim names come from the session-token contract in `@titancompute/protocol`,
 * like the coordinator's; `aud` is copied into `agent_id` as the coordinator does.
 */
export async function createTestSigner(defaults: TestClaims = {}, kid = `k-${randomUUID().slice(0, 8)}`): Promise<TestSigner> {
  const { privateKey, publicKey } = await generateKeyPair(SESSION_TOKEN_ALGORITHM, { extractable: true });
  const publicKeyPem = await exportSPKI(publicKey as CryptoKey);
  return {
    kid,
    publicKeyPem,
    publicKey: () => ({ keyId: kid, publicKeyPem, algorithm: SESSION_TOKEN_ALGORITHM, retireAt: 0 }),
    async sign(claims = {}, header = {}) {
      const now = Math.floor(Date.now() / 1000);
      const jobId = randomUUID();
      const all: Record<string, unknown> = {
        iss: SESSION_TOKEN_ISSUER,
        sub: 'test-client',
        jti: randomUUID(),
        [SESSION_TOKEN_CLAIMS.model]: 'llama-2-tiny-random',
        [SESSION_TOKEN_CLAIMS.maxTokens]: 16,
        [SESSION_TOKEN_CLAIMS.temperature]: 0.7,
        [SESSION_TOKEN_CLAIMS.jobId]: jobId,
        [SESSION_TOKEN_CLAIMS.clientId]: 'test-client',
        iat: now,
        nbf: now,
        exp: now + 300,
        ...defaults,
        ...claims,
      };
      if (all.aud !== undefined) all[SESSION_TOKEN_CLAIMS.agentId] = all.aud;
      for (const k of Object.keys(all)) if (all[k] === undefined) delete all[k];
      const kidHeader = 'kid' in header ? header.kid : kid;
      return new SignJWT(all)
        .setProtectedHeader({ alg: SESSION_TOKEN_ALGORITHM, typ: SESSION_TOKEN_TYPE, ...(kidHeader ? { kid: kidHeader } : {}) })
        .sign(privateKey);
    },
  };
}

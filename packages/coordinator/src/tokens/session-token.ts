import { createHash, randomUUID } from 'node:crypto';
import { decodeProtectedHeader, errors as joseErrors, jwtVerify, SignJWT, type CryptoKey, type JWTPayload } from 'jose';
import { TokenSigningError, TokenVerificationError } from '../errors.js';
import { importPublicKey, TOKEN_ALGORITHM, type Keyring, type PublishedKey } from './keyring.js';

/** Default issuer (`iss`), also `PublicKeyResponse.issuer`. */
export const DEFAULT_ISSUER = 'titancompute-coordinator';

/** What a session token grants. */
export interface SessionGrant {
  /** The chosen agent (`aud`, and v1's `agent_id`). */
  agentId: string;
  /** The client (`sub`, and v1's `client_id`). */
  clientId: string;
  jobId: string;
  model: string;
  maxTokens: number;
  temperature: number;
  /** Engine parameters the client asked for (claim `parameters`), if any. */
  parameters?: Record<string, string>;
  /**
   * The prompt the token is for. Only its hash is signed (claim `prompt_sha256`); the agent
   * refuses a StreamRequest whose prompt hashes differently.
   */
  prompt?: string;
}

/** The `prompt_sha256` claim of a prompt: base64url (no padding) SHA-256 of its UTF-8 bytes. */
export function promptSha256(prompt: string): string {
  return createHash('sha256').update(prompt, 'utf8').digest('base64url');
}

/** Claims of a session token. */
export interface SessionClaims extends JWTPayload {
  iss: string;
  aud: string;
  sub: string;
  jti: string;
  iat: number;
  nbf: number;
  exp: number;
  job_id: string;
  model: string;
  max_tokens: number;
  temperature: number;
  agent_id: string;
  client_id: string;
  parameters?: Record<string, string>;
  /** base64url SHA-256 of the UTF-8 prompt; absent only when the grant had no prompt. */
  prompt_sha256?: string;
}

/** A signed token and when it expires. */
export interface SignedSessionToken {
  token: string;
  /** Unix seconds. */
  expiresAt: number;
  jti: string;
  kid: string;
}

/**
 * Signs a session token with the keyring's current key (jose, EdDSA, header `kid`).
 *
 * @example
 * ```ts
 * const { token, expiresAt } = await signSessionToken(keyring, grant, { issuer: DEFAULT_ISSUER, ttlMs: 300_000 });
 * ```
 */
export async function signSessionToken(
  keyring: Keyring,
  grant: SessionGrant,
  options: { issuer: string; ttlMs: number; now?: number },
): Promise<SignedSessionToken> {
  const key = keyring.current();
  const iat = Math.floor((options.now ?? Date.now()) / 1000);
  const exp = iat + Math.max(1, Math.ceil(options.ttlMs / 1000));
  const jti = randomUUID();
  const payload: Record<string, unknown> = {
    job_id: grant.jobId,
    model: grant.model,
    max_tokens: grant.maxTokens,
    temperature: grant.temperature,
    agent_id: grant.agentId,
    client_id: grant.clientId,
  };
  if (grant.parameters && Object.keys(grant.parameters).length > 0) payload.parameters = grant.parameters;
  if (grant.prompt !== undefined) payload.prompt_sha256 = promptSha256(grant.prompt);
  try {
    const token = await new SignJWT(payload)
      .setProtectedHeader({ alg: TOKEN_ALGORITHM, kid: key.kid, typ: 'JWT' })
      .setIssuer(options.issuer)
      .setAudience(grant.agentId)
      .setSubject(grant.clientId)
      .setJti(jti)
      .setIssuedAt(iat)
      .setNotBefore(iat)
      .setExpirationTime(exp)
      .sign(key.privateKey);
    keyring.noteSigned(key.kid, exp);
    return { token, expiresAt: exp, jti, kid: key.kid };
  } catch (cause) {
    throw new TokenSigningError(`could not sign a session token: ${(cause as Error).message}`, { kid: key.kid }, { cause });
  }
}

/** Options of {@link verifySessionToken}. */
export interface VerifySessionTokenOptions {
  /** Published keys (GetPublicKey's `keys`). */
  keys: readonly Pick<PublishedKey, 'keyId' | 'publicKeyPem'>[];
  issuer: string;
  /** The verifying agent's id. */
  audience: string;
  /** Clock tolerance in seconds (≤ 5). Default 5. */
  clockToleranceSec?: number;
  /** Verification time (ms). Default now. */
  now?: number;
}

const keyCache = new Map<string, Promise<CryptoKey>>();

/**
 * Verifies a session token the way an agent must: signature by the key with the token's
 * `kid`, issuer, audience, exp/nbf. Throws {@link TokenVerificationError} otherwise.
 *
 * @example
 * ```ts
 * const { keys, issuer } = await coordinator.getPublicKey({});
 * const claims = await verifySessionToken(token, { keys, issuer, audience: 'agent-1' });
 * ```
 */
export async function verifySessionToken(token: string, options: VerifySessionTokenOptions): Promise<SessionClaims> {
  let kid: string | undefined;
  try {
    kid = decodeProtectedHeader(token).kid;
  } catch (cause) {
    throw new TokenVerificationError('malformed token', {}, { cause });
  }
  const published = options.keys.find((k) => k.keyId === kid);
  if (!published) throw new TokenVerificationError(`unknown key id ${kid ?? '(none)'}`, { kid });
  let key = keyCache.get(published.publicKeyPem);
  if (!key) keyCache.set(published.publicKeyPem, (key = importPublicKey(published.publicKeyPem)));
  try {
    const { payload } = await jwtVerify(token, await key, {
      algorithms: [TOKEN_ALGORITHM],
      issuer: options.issuer,
      audience: options.audience,
      clockTolerance: Math.min(options.clockToleranceSec ?? 5, 5),
      requiredClaims: ['exp', 'nbf', 'iat', 'jti', 'sub'],
      ...(options.now !== undefined ? { currentDate: new Date(options.now) } : {}),
    });
    return payload as SessionClaims;
  } catch (cause) {
    const reason = cause instanceof joseErrors.JWTExpired ? 'token expired' : cause instanceof joseErrors.JOSEError ? cause.message : String(cause);
    throw new TokenVerificationError(`invalid session token: ${reason}`, { kid }, { cause });
  }
}

import { randomUUID, sign } from 'node:crypto';
import {
  promptSha256,
  SESSION_TOKEN_ALGORITHM,
  SESSION_TOKEN_ISSUER,
  SESSION_TOKEN_TYPE,
  sessionTokenAudience,
  sessionTokenPayload,
  type SessionTokenClaims,
  type SessionTokenGrant,
} from '@titancompute/protocol';
import { TokenSigningError } from '../errors.js';
import type { Keyring } from './keyring.js';

/** Default issuer (`iss`), also `PublicKeyResponse.issuer`: the contract's {@link SESSION_TOKEN_ISSUER}. */
export const DEFAULT_ISSUER = SESSION_TOKEN_ISSUER;

/**
 * What a session token grants (the contract's `SessionTokenGrant`). Only the prompt's hash is
 * signed (claim `prompt_sha256`), and the chat messages' hash when there are any (claim
 * `messages_sha256`); the agent refuses a StreamRequest whose prompt or messages hash differently.
 */
export type SessionGrant = SessionTokenGrant;

/** Claims of a session token (the contract's `SessionTokenClaims`). */
export type SessionClaims = SessionTokenClaims;

/** The `prompt_sha256` claim of a prompt (the contract's helper, re-exported). */
export { promptSha256 };

/** A signed token and when it expires. */
export interface SignedSessionToken {
  token: string;
  /** Unix seconds. */
  expiresAt: number;
  jti: string;
  kid: string;
}

/** base64url (no padding) of a string's UTF-8 bytes. */
const base64url = (text: string): string => Buffer.from(text, 'utf8').toString('base64url');

/** The encoded protected header of the last key used: it only changes with the key. */
let encodedHeader: { kid: string; value: string } | undefined;

/** The encoded JOSE header `{ alg, kid, typ }` of tokens signed by `kid` (the same bytes jose writes). */
function protectedHeaderOf(kid: string): string {
  if (encodedHeader?.kid !== kid) encodedHeader = { kid, value: base64url(JSON.stringify({ alg: SESSION_TOKEN_ALGORITHM, kid, typ: SESSION_TOKEN_TYPE })) };
  return encodedHeader.value;
}

/**
 * Signs a session token with the keyring's current key (EdDSA, header `kid`), with the claims of
 * the contract in `@titancompute/protocol`. Agents verify it with their token verifier (jose).
 *
 * The compact JWS is built here and signed by `crypto.sign` with the keyring's `KeyObject`, on
 * the calling thread: the same bytes jose's `SignJWT` produces (header `{ alg, kid, typ }`, the
 * grant's claims then `iss`, `aud`, `sub`, `jti`, `iat`, `nbf`, `exp`; Ed25519 is deterministic),
 * without WebCrypto's per-call key import, algorithm normalisation and thread-pool round trip.
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
  return signSessionTokenSync(keyring, grant, options);
}

/**
 * {@link signSessionToken} without the promise: the request router signs in the same turn as it
 * reserves. Throws {@link TokenSigningError}.
 */
export function signSessionTokenSync(keyring: Keyring, grant: SessionGrant, options: { issuer: string; ttlMs: number; now?: number }): SignedSessionToken {
  const key = keyring.current();
  const iat = Math.floor((options.now ?? Date.now()) / 1000);
  const exp = iat + Math.max(1, Math.ceil(options.ttlMs / 1000));
  const jti = randomUUID();
  try {
    const claims = sessionTokenPayload(grant);
    claims.iss = options.issuer;
    claims.aud = sessionTokenAudience(grant.agentId);
    claims.sub = grant.clientId;
    claims.jti = jti;
    claims.iat = iat;
    claims.nbf = iat;
    claims.exp = exp;
    const signingInput = `${protectedHeaderOf(key.kid)}.${base64url(JSON.stringify(claims))}`;
    const signature = sign(null, Buffer.from(signingInput, 'latin1'), key.privateKey).toString('base64url');
    keyring.noteSigned(key.kid, exp);
    return { token: `${signingInput}.${signature}`, expiresAt: exp, jti, kid: key.kid };
  } catch (cause) {
    throw new TokenSigningError(`could not sign a session token: ${(cause as Error).message}`, { kid: key.kid }, { cause });
  }
}

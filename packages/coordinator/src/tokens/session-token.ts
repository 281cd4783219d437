import { randomUUID } from 'node:crypto';
import { SignJWT } from 'jose';
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

/**
 * Signs a session token with the keyring's current key (jose, EdDSA, header `kid`), with the
 * claims of the contract in `@titancompute/protocol`. Agents verify it with their token verifier.
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
  try {
    const token = await new SignJWT(sessionTokenPayload(grant))
      .setProtectedHeader({ alg: SESSION_TOKEN_ALGORITHM, kid: key.kid, typ: SESSION_TOKEN_TYPE })
      .setIssuer(options.issuer)
      .setAudience(sessionTokenAudience(grant.agentId))
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

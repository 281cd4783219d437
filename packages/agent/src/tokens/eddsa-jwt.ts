import { createPublicKey, verify, type KeyObject } from 'node:crypto';
import { Status } from 'nice-grpc-common';
import { SESSION_TOKEN_ALGORITHM } from '@titancompute/protocol';
import { TokenError } from '../errors.js';

/**
 * Verification of the session token's JWS (RFC 7515 compact serialization, EdDSA over Ed25519,
 * RFC 8037) and of its registered claims (RFC 7519), synchronously with node:crypto.
 *
 * Why not jose, which the coordinator signs with: jose verifies through WebCrypto, whose
 * `subtle.verify` runs as a job on libuv's thread pool; on the agent that pool also carries
 * llama.cpp's decode and sampling, and the hop cost about 0.5 ms per stream before its first
 * token (bench/agent.bench.mjs), against about 0.15 ms for node:crypto's one-shot `verify` on the
 * event loop. The checks are the ones the agent asked jose for, in the same order, with the
 * same outcomes: compact form, protected header (`alg` must be EdDSA, no `crit`), signature,
 * claims set a JSON object, required claims present, `iss`, then `iat`/`nbf`/`exp` numeric with
 * `nbf` ≤ now + tolerance and `exp` > now − tolerance.
 */

/** A compact JWS split into its parts, its protected header parsed. */
export interface CompactJws {
  header: Record<string, unknown>;
  /** The signing input: `<header>.<payload>` as sent. */
  signingInput: string;
  payload: string;
  signature: string;
}

/** What {@link verifyEdDsaJwt} checks besides the signature. */
export interface JwtClaimChecks {
  /** Expected `iss`. */
  issuer: string;
  /** Clock skew tolerated on `nbf` and `exp`, seconds. */
  clockToleranceSec: number;
  /** Claims that must be present. */
  requiredClaims: readonly string[];
  /** The time to check against, Unix seconds. Default: now. */
  nowSec?: number;
}

const BASE64URL = /^[A-Za-z0-9_-]*$/;

const malformed = (reason: string) => new TokenError(`session token is malformed: ${reason}`, Status.UNAUTHENTICATED);
const invalidClaim = (claim: string, reason: 'missing' | 'check_failed' | 'invalid') =>
  new TokenError(`session token claim ${claim} is invalid: ${reason}`, Status.UNAUTHENTICATED, { claim });

/** A base64url segment decoded as a JSON object, or undefined. */
function jsonObject(segment: string): Record<string, unknown> | undefined {
  if (!BASE64URL.test(segment)) return undefined;
  let value: unknown;
  try {
    value = JSON.parse(Buffer.from(segment, 'base64url').toString('utf8'));
  } catch {
    return undefined;
  }
  return typeof value === 'object' && value !== null && !Array.isArray(value) ? (value as Record<string, unknown>) : undefined;
}

/**
 * Splits a compact JWS and parses its protected header. Throws {@link TokenError}
 * UNAUTHENTICATED: malformed (not three base64url parts, a header that is not a JSON object, an
 * `alg` missing, a `crit` header this verifier does not understand), or an algorithm other than
 * EdDSA.
 */
export function parseCompactJws(token: string): CompactJws {
  const parts = token.split('.');
  if (parts.length !== 3) throw malformed('Invalid Compact JWS');
  const [head = '', payload = '', signature = ''] = parts;
  const header = jsonObject(head);
  if (!header) throw malformed('JWS Protected Header is invalid');
  if (header.crit !== undefined) throw malformed('Extension Header Parameter(s) in "crit" are not supported');
  if (typeof header.alg !== 'string' || header.alg === '') throw malformed('JWS "alg" (Algorithm) Header Parameter missing or invalid');
  if (header.alg !== SESSION_TOKEN_ALGORITHM) throw new TokenError('session token algorithm not allowed (EdDSA only)', Status.UNAUTHENTICATED);
  if (!BASE64URL.test(payload) || !BASE64URL.test(signature) || signature === '') throw malformed('Invalid Compact JWS');
  return { header, signingInput: `${head}.${payload}`, payload, signature };
}

/**
 * Verifies a parsed JWS's Ed25519 signature with `key` (synchronously: about 0.1–0.2 ms),
 * then its claims set: a JSON object with every required claim, the expected `iss`, numeric
 * `iat`/`nbf`/`exp`, not before `nbf` and not after `exp` (each with the clock tolerance).
 * Returns the claims. Throws {@link TokenError} UNAUTHENTICATED: `session token signature is
 * invalid`, `session token expired`, `session token is not valid yet (nbf)`, `session token
 * claim <claim> is invalid: <missing|check_failed|invalid>` or malformed.
 */
export function verifyEdDsaJwt(jws: CompactJws, key: KeyObject, checks: JwtClaimChecks): Record<string, unknown> {
  let valid: boolean;
  try {
    valid = verify(null, Buffer.from(jws.signingInput), key, Buffer.from(jws.signature, 'base64url'));
  } catch {
    valid = false;
  }
  return checkClaims(jws, valid, checks);
}

/** The claims of a JWS whose signature check came out `valid`, checked (see {@link verifyEdDsaJwt}). */
function checkClaims(jws: CompactJws, valid: boolean, checks: JwtClaimChecks): Record<string, unknown> {
  if (!valid) throw new TokenError('session token signature is invalid', Status.UNAUTHENTICATED);
  const claims = jsonObject(jws.payload);
  if (!claims) throw malformed('JWT Claims Set must be a top-level JSON object');
  for (const claim of new Set([...checks.requiredClaims, 'iss'])) if (!Object.hasOwn(claims, claim)) throw invalidClaim(claim, 'missing');
  if (claims.iss !== checks.issuer) throw invalidClaim('iss', 'check_failed');
  const now = checks.nowSec ?? Math.floor(Date.now() / 1000);
  const numeric = (claim: 'iat' | 'nbf' | 'exp'): number | undefined => {
    const value = claims[claim];
    if (value === undefined) return undefined;
    if (typeof value !== 'number' || !Number.isFinite(value)) throw invalidClaim(claim, 'invalid');
    return value;
  };
  numeric('iat');
  const nbf = numeric('nbf');
  if (nbf !== undefined && nbf > now + checks.clockToleranceSec) throw new TokenError('session token is not valid yet (nbf)', Status.UNAUTHENTICATED);
  const exp = numeric('exp');
  if (exp !== undefined && exp <= now - checks.clockToleranceSec) throw new TokenError('session token expired', Status.UNAUTHENTICATED);
  return claims;
}

/**
 * An Ed25519 public key from its SPKI PEM. Throws when the PEM does not parse or holds another
 * kind of key.
 */
export function importEd25519PublicKey(pem: string): KeyObject {
  const key = createPublicKey(pem);
  if (key.asymmetricKeyType !== 'ed25519') throw new Error(`expected an Ed25519 key, got ${key.asymmetricKeyType ?? 'an unknown key type'}`);
  return key;
}

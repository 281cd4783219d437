import { describe, expect, it } from '@jest/globals';
import { generateKeyPairSync, sign, type KeyObject } from 'node:crypto';
import { Status } from 'nice-grpc-common';
import { jwtVerify } from 'jose';
import { TokenError } from '../errors.js';
import { importEd25519PublicKey, parseCompactJws, verifyEdDsaJwt } from './eddsa-jwt.js';

const ISSUER = 'titancompute-coordinator';
const REQUIRED = ['exp', 'jti', 'aud', 'iss'] as const;
const TOLERANCE = 5;
const { publicKey, privateKey } = generateKeyPairSync('ed25519');
const other = generateKeyPairSync('ed25519');
const b64 = (value: unknown) => Buffer.from(typeof value === 'string' ? value : JSON.stringify(value)).toString('base64url');

/** A compact JWS of `header` and `payload` (objects, or raw strings to encode as they are), signed with `key`. */
function jws(header: unknown, payload: unknown, key: KeyObject = privateKey): string {
  const input = `${b64(header)}.${b64(payload)}`;
  return `${input}.${sign(null, Buffer.from(input), key).toString('base64url')}`;
}

const now = () => Math.floor(Date.now() / 1000);
const claims = (extra: Record<string, unknown> = {}) => ({ iss: ISSUER, aud: 'agent-a', jti: 'j-1', iat: now(), nbf: now(), exp: now() + 300, ...extra });
const HEADER = { alg: 'EdDSA', typ: 'JWT', kid: 'k1' };

/** Our verdict on a token: the claims, or the refusal's message. */
function ours(token: string): { ok: true; claims: Record<string, unknown> } | { ok: false; message: string } {
  try {
    return { ok: true, claims: verifyEdDsaJwt(parseCompactJws(token), publicKey, { issuer: ISSUER, clockToleranceSec: TOLERANCE, requiredClaims: REQUIRED }) };
  } catch (err) {
    expect(err).toBeInstanceOf(TokenError);
    expect((err as TokenError).grpcStatus).toBe(Status.UNAUTHENTICATED);
    return { ok: false, message: (err as Error).message };
  }
}

/** jose's verdict with the options the agent used to pass it. */
async function jose(token: string): Promise<boolean> {
  try {
    await jwtVerify(token, publicKey, { issuer: ISSUER, algorithms: ['EdDSA'], clockTolerance: TOLERANCE, requiredClaims: [...REQUIRED] });
    return true;
  } catch {
    return false;
  }
}

describe('verifyEdDsaJwt', () => {
  it('accepts what jose accepts and refuses what jose refuses, with the messages the agent always gave', async () => {
    const good = jws(HEADER, claims());
    const [h, p, s] = good.split('.');
    const cases: [string, string, string | null][] = [
      ['a valid token', good, null],
      ['no kid, extra header fields', jws({ alg: 'EdDSA', foo: 1 }, claims()), null],
      ['exp 3 s ago (within the tolerance)', jws(HEADER, claims({ exp: now() - 3 })), null],
      ['nbf 3 s ahead (within the tolerance)', jws(HEADER, claims({ nbf: now() + 3 })), null],
      ['another payload under the signature', `${h}.${b64(claims({ max_tokens: 4000 }))}.${s}`, 'session token signature is invalid'],
      ['a signature by another key', jws(HEADER, claims(), other.privateKey), 'session token signature is invalid'],
      ['a truncated signature', `${h}.${p}.${s?.slice(0, 20)}`, 'session token signature is invalid'],
      ['alg none, unsigned', `${b64({ alg: 'none' })}.${p}.`, 'session token algorithm not allowed (EdDSA only)'],
      ['alg HS256', jws({ alg: 'HS256' }, claims()), 'session token algorithm not allowed (EdDSA only)'],
      ['no alg', jws({ typ: 'JWT' }, claims()), 'session token is malformed: JWS "alg" (Algorithm) Header Parameter missing or invalid'],
      [
        'a crit header',
        jws({ ...HEADER, crit: ['b64'], b64: false }, claims()),
        'session token is malformed: Extension Header Parameter(s) in "crit" are not supported',
      ],
      ['two parts', `${h}.${p}`, 'session token is malformed: Invalid Compact JWS'],
      ['four parts', `${good}.${s}`, 'session token is malformed: Invalid Compact JWS'],
      ['not base64url', `${h}.${p}!.${s}`, 'session token is malformed: Invalid Compact JWS'],
      ['a header that is not JSON', `${b64('{nope')}.${p}.${s}`, 'session token is malformed: JWS Protected Header is invalid'],
      ['a payload that is an array', jws(HEADER, [1, 2]), 'session token is malformed: JWT Claims Set must be a top-level JSON object'],
      ['a payload that is not JSON', jws(HEADER, 'not json'), 'session token is malformed: JWT Claims Set must be a top-level JSON object'],
      ['no exp', jws(HEADER, claims({ exp: undefined })), 'session token claim exp is invalid: missing'],
      ['no jti', jws(HEADER, claims({ jti: undefined })), 'session token claim jti is invalid: missing'],
      ['another issuer', jws(HEADER, claims({ iss: 'someone-else' })), 'session token claim iss is invalid: check_failed'],
      ['exp a string', jws(HEADER, claims({ exp: String(now() + 300) })), 'session token claim exp is invalid: invalid'],
      ['iat a string', jws(HEADER, claims({ iat: 'yesterday' })), 'session token claim iat is invalid: invalid'],
      ['expired 6 s ago', jws(HEADER, claims({ exp: now() - 6 })), 'session token expired'],
      ['nbf 60 s ahead', jws(HEADER, claims({ nbf: now() + 60 })), 'session token is not valid yet (nbf)'],
    ];
    for (const [what, token, refusal] of cases) {
      const verdict = ours(token);
      expect({ what, ok: verdict.ok }).toEqual({ what, ok: refusal === null });
      if (!verdict.ok) expect({ what, message: verdict.message }).toEqual({ what, message: refusal });
      expect({ what, jose: await jose(token) }).toEqual({ what, jose: refusal === null });
    }
  });

  it('returns the claims of a valid token and reads the header it was signed with', () => {
    const token = jws(HEADER, claims({ job_id: 'job-1' }));
    expect(parseCompactJws(token).header).toEqual(HEADER);
    expect(ours(token)).toEqual({ ok: true, claims: expect.objectContaining({ job_id: 'job-1', iss: ISSUER }) });
  });
});

describe('importEd25519PublicKey', () => {
  it('imports an Ed25519 SPKI PEM and refuses other keys', () => {
    const pem = publicKey.export({ type: 'spki', format: 'pem' }).toString();
    expect(importEd25519PublicKey(pem).asymmetricKeyType).toBe('ed25519');
    const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey.export({ type: 'spki', format: 'pem' }).toString();
    expect(() => importEd25519PublicKey(ec)).toThrow(/expected an Ed25519 key, got ec/);
    expect(() => importEd25519PublicKey('not a pem')).toThrow();
  });
});

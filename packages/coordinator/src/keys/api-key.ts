import { createHash, randomBytes } from 'node:crypto';

/** Every API key secret starts with this. */
export const API_KEY_SECRET_PREFIX = 'tk-';
/** Characters of the secret kept (and listed) to tell keys apart: `tk-` and 7 more. */
export const API_KEY_PREFIX_LENGTH = 10;
/** A key's name: 1–128 characters of `[A-Za-z0-9._:@-]`, starting with a letter or digit. */
export const API_KEY_NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}$/;
/** A key's id: `key-` and 12 hex digits. */
export const API_KEY_ID_PATTERN = /^key-[0-9a-f]{12}$/;

/** The limits of a key; 0 (or no models) means unlimited. */
export interface ApiKeyLimits {
  /** Requests granted in any sliding minute. */
  requestsPerMinute: number;
  /** Tokens charged (prompt + generated, as the agents report them) in any sliding minute. */
  tokensPerMinute: number;
  /** Reservations plus running jobs at once. */
  maxConcurrent: number;
  /** Tokens over the key's lifetime. */
  budgetTokens: number;
  /** Models the key may use; empty: every model. */
  models: readonly string[];
}

/** A stored API key: never its secret, only the secret's SHA-256 (kept by the store). */
export interface ApiKeyRecord extends ApiKeyLimits {
  id: string;
  /** Unique among active keys; the `client_id` of the key's requests. */
  name: string;
  /** The first {@link API_KEY_PREFIX_LENGTH} characters of the secret. */
  prefix: string;
  /** Unix ms. */
  createdAtMs: number;
  /** Unix ms; undefined: never expires. */
  expiresAtMs: number | undefined;
  /** Unix ms; undefined: not revoked. */
  revokedAtMs: number | undefined;
  /** Tokens charged so far. */
  tokensUsed: number;
  /** Requests granted so far. */
  requestsTotal: number;
  /** Unix ms of the last granted request; undefined: never used. */
  lastUsedAtMs: number | undefined;
}

/** What a store writes for a new key. */
export interface NewApiKey extends ApiKeyLimits {
  id: string;
  name: string;
  prefix: string;
  /** SHA-256 of the secret. */
  secretSha256: Buffer;
  createdAtMs: number;
  expiresAtMs: number | undefined;
}

/** A key's state at some time. */
export type ApiKeyState = 'active' | 'revoked' | 'expired';

/** `revoked` when revoked, `expired` when its expiry is at or before `nowMs`, else `active`. */
export function apiKeyState(key: Pick<ApiKeyRecord, 'revokedAtMs' | 'expiresAtMs'>, nowMs: number): ApiKeyState {
  if (key.revokedAtMs !== undefined) return 'revoked';
  if (key.expiresAtMs !== undefined && key.expiresAtMs <= nowMs) return 'expired';
  return 'active';
}

/** SHA-256 of a secret: all a store keeps of it. */
export function hashApiKeySecret(secret: string): Buffer {
  return createHash('sha256').update(secret, 'utf8').digest();
}

/** A new key's secret (`tk-` and 32 random bytes, base64url), id (`key-` and 12 hex digits) and listed prefix. */
export function generateApiKeySecret(): { secret: string; id: string; prefix: string } {
  const secret = `${API_KEY_SECRET_PREFIX}${randomBytes(32).toString('base64url')}`;
  return { secret, id: `key-${randomBytes(6).toString('hex')}`, prefix: secret.slice(0, API_KEY_PREFIX_LENGTH) };
}

import { z } from 'zod';
import { InvalidRequestError } from '../errors.js';
import { API_KEY_ID_PATTERN, API_KEY_NAME_PATTERN } from './api-key.js';

/** Most models one key may list. */
export const MAX_KEY_MODELS = 256;
/** Longest lifetime a key may be given: 100 years. */
export const MAX_KEY_LIFETIME_SECONDS = 100 * 365 * 86_400;

/** What creating a key takes (CreateApiKey, `POST /admin/keys`); limits 0 = unlimited. */
export interface CreateApiKeyInput {
  name: string;
  requestsPerMinute?: number | undefined;
  tokensPerMinute?: number | undefined;
  maxConcurrent?: number | undefined;
  budgetTokens?: number | undefined;
  /** Empty or absent: every model. */
  models?: readonly string[] | undefined;
  /** Lifetime from now; 0 or absent: never expires. */
  expiresInSeconds?: number | undefined;
}

/** A validated {@link CreateApiKeyInput}, defaults applied. */
export type ValidatedCreateApiKey = Required<{ [K in keyof CreateApiKeyInput]: NonNullable<CreateApiKeyInput[K]> }> & { models: string[] };

const limit = (max: number) =>
  z
    .number({ error: 'must be a number' })
    .int('must be an integer')
    .min(0, 'must not be negative (0 = unlimited)')
    .max(max, `must be at most ${max}`)
    .default(0);

const schema = z.object({
  name: z
    .string({ error: (issue) => (issue.input === undefined ? 'is required' : 'must be a string') })
    .min(1, 'is required')
    .regex(API_KEY_NAME_PATTERN, 'must be 1-128 characters of A-Z a-z 0-9 . _ : @ -, starting with a letter or digit')
    .refine((n) => !API_KEY_ID_PATTERN.test(n), 'must not look like a key id (key-<12 hex digits>)'),
  requestsPerMinute: limit(1_000_000_000),
  tokensPerMinute: limit(Number.MAX_SAFE_INTEGER),
  maxConcurrent: limit(1_000_000),
  budgetTokens: limit(Number.MAX_SAFE_INTEGER),
  models: z
    .array(z.string({ error: 'entries must be strings' }).trim().min(1, 'entries must not be empty').max(256, 'entries must be at most 256 characters'), {
      error: 'must be an array of model names',
    })
    .max(MAX_KEY_MODELS, `must list at most ${MAX_KEY_MODELS} models`)
    .optional()
    .transform((models) => [...new Set(models ?? [])]),
  expiresInSeconds: limit(MAX_KEY_LIFETIME_SECONDS),
});

const FIELDS: Record<string, string> = {
  name: 'name',
  requestsPerMinute: 'requests_per_minute',
  tokensPerMinute: 'tokens_per_minute',
  maxConcurrent: 'max_concurrent',
  budgetTokens: 'budget_tokens',
  models: 'models',
  expiresInSeconds: 'expires_in_seconds',
};

/**
 * Validates a new key's name and limits; throws {@link InvalidRequestError} (INVALID_ARGUMENT,
 * REST 400) naming the field as on the wire (`name`, `requests_per_minute`, `models[2]` …).
 *
 * @example
 * ```ts
 * const input = validateCreateApiKey({ name: 'ci', requestsPerMinute: 60, models: ['llama-2-tiny-random'] });
 * ```
 */
export function validateCreateApiKey(input: CreateApiKeyInput): ValidatedCreateApiKey {
  const parsed = schema.safeParse(input);
  if (parsed.success) return parsed.data;
  const issue = parsed.error.issues[0];
  const [head, ...rest] = issue?.path ?? [];
  const field = rest.reduce<string>((acc, seg) => (typeof seg === 'number' ? `${acc}[${seg}]` : `${acc}.${String(seg)}`), FIELDS[String(head)] ?? 'request');
  throw new InvalidRequestError(field, issue?.message ?? 'is invalid');
}

/**
 * Parses a key lifetime such as `30d`, `12h`, `90m`, `3600s` or a bare number of seconds into
 * seconds; undefined when it is none of these.
 */
export function parseKeyLifetime(raw: string): number | undefined {
  const m = /^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d|w)?\s*$/.exec(raw);
  if (!m) return undefined;
  const factor = { s: 1, m: 60, h: 3600, d: 86_400, w: 604_800 }[(m[2] ?? 's') as 's' | 'm' | 'h' | 'd' | 'w'];
  return Math.round(Number(m[1]) * factor);
}

import { createHash } from 'node:crypto';
import { z } from 'zod';

/**
 * The session-token contract: what the coordinator signs (`RequestInference` → `session_token`)
 * and what an agent verifies before it streams (`StreamInference`). The coordinator's signer,
 * the agent's verifier and the agents' test signer all take their names, issuer, algorithm and
 * claims from here, so they cannot drift apart.
 *
 * A token is a compact JWS (JWT), header `{ alg: 'EdDSA', kid, typ: 'JWT' }`, signed with an
 * Ed25519 key published by `GetPublicKey`. Its claims are {@link SessionTokenClaims}.
 *
 * @packageDocumentation
 */

/** The only signing algorithm (JOSE `alg`, also `PublicKey.algorithm`): Ed25519. */
export const SESSION_TOKEN_ALGORITHM = 'EdDSA';

/** The JOSE `typ` header of a session token. */
export const SESSION_TOKEN_TYPE = 'JWT';

/** Default issuer (`iss`), also `PublicKeyResponse.issuer` unless the coordinator is configured otherwise. */
export const SESSION_TOKEN_ISSUER = 'titancompute-coordinator';

/** Registered claims a verifier must find in every token (jose `requiredClaims`). */
export const SESSION_TOKEN_REQUIRED_CLAIMS = ['exp', 'jti', 'aud', 'iss'] as const;

/** Largest clock tolerance (seconds) a verifier may allow on `exp`/`nbf`. */
export const SESSION_TOKEN_MAX_CLOCK_TOLERANCE_SEC = 5;

/** Names of the private claims of a session token, as they appear on the wire. */
export const SESSION_TOKEN_CLAIMS = {
  /** The coordinator's job id (reported back by the agent). */
  jobId: 'job_id',
  /** The model the job runs. */
  model: 'model',
  /** The largest `max_tokens` the agent may generate. */
  maxTokens: 'max_tokens',
  /** The temperature granted (a StreamRequest sends it again or leaves it 0). */
  temperature: 'temperature',
  /** Same as `aud` (kept for v1 agents). */
  agentId: 'agent_id',
  /** Same as `sub` (kept for v1 agents). */
  clientId: 'client_id',
  /** Engine parameters granted (StreamRequest.options); absent when there were none. */
  parameters: 'parameters',
  /** base64url SHA-256 of the UTF-8 prompt (see {@link promptSha256}). */
  promptSha256: 'prompt_sha256',
  /** base64url SHA-256 of the canonical JSON of the chat messages (see {@link messagesSha256}); only when the grant has messages. */
  messagesSha256: 'messages_sha256',
} as const;

/**
 * The audience rule: a token's `aud` is the id of the one agent it was granted for. An agent
 * refuses (PERMISSION_DENIED) a token whose `aud` does not name it.
 *
 * @example
 * ```ts
 * new SignJWT(claims).setAudience(sessionTokenAudience(agent.id));
 * ```
 */
export function sessionTokenAudience(agentId: string): string {
  return agentId;
}

/**
 * The `prompt_sha256` claim of a prompt: base64url (no padding) SHA-256 of its UTF-8 bytes,
 * exactly as sent (no trimming or normalisation). 43 characters.
 *
 * @example
 * ```ts
 * promptSha256('hi'); // 'j0NDRmSPa5bfid2pAcUXaxCm2Dlh3TwayItZstwyeqQ'
 * ```
 */
export function promptSha256(prompt: string): string {
  return createHash('sha256').update(prompt, 'utf8').digest('base64url');
}

/** One chat turn as the token contract sees it (the shape of the proto's `ChatMessage`). */
export interface SessionTokenChatMessage {
  role: string;
  content: string;
}

/**
 * The canonical JSON of chat messages that {@link messagesSha256} hashes: a JSON array of
 * `[role, content]` pairs, in order, as `JSON.stringify` writes them (no whitespace; strings
 * escaped per ECMA-262, so `"`, `\\` and control characters are escaped and everything else,
 * non-ASCII included, is kept as is). Roles and contents are taken exactly as sent (no trimming
 * or normalisation). Other fields a message may carry are not part of it.
 *
 * @example
 * ```ts
 * canonicalMessagesJson([{ role: 'user', content: 'hi' }]); // '[["user","hi"]]'
 * ```
 */
export function canonicalMessagesJson(messages: readonly SessionTokenChatMessage[]): string {
  return JSON.stringify(messages.map((m) => [m.role, m.content]));
}

/**
 * The `messages_sha256` claim of chat messages: base64url (no padding) SHA-256 of the UTF-8
 * bytes of {@link canonicalMessagesJson}. 43 characters.
 *
 * @example
 * ```ts
 * messagesSha256([{ role: 'user', content: 'hi' }]); // same as promptSha256('[["user","hi"]]')
 * ```
 */
export function messagesSha256(messages: readonly SessionTokenChatMessage[]): string {
  return promptSha256(canonicalMessagesJson(messages));
}

/** A base64url (no padding) SHA-256 claim: 43 characters. */
const sha256Claim = z.string().regex(/^[A-Za-z0-9_-]{43}$/, 'must be a base64url SHA-256');

/**
 * The claims an agent reads from a verified token. The coordinator always signs every one of
 * them except `parameters` (only when there are any), `prompt_sha256` (only when the grant
 * had a prompt; a chat grant signs the empty prompt's) and `messages_sha256` (only when the grant
 * had messages); `job_id`, `sub`, `client_id` are optional for tokens of older coordinators.
 */
export const sessionTokenClaimsSchema = z.object({
  iss: z.string().min(1).optional(),
  aud: z.union([z.string(), z.array(z.string())]).optional(),
  sub: z.string().optional(),
  jti: z.string().min(1),
  iat: z.number().optional(),
  nbf: z.number().optional(),
  exp: z.number(),
  [SESSION_TOKEN_CLAIMS.jobId]: z.string().min(1).optional(),
  [SESSION_TOKEN_CLAIMS.model]: z.string().min(1),
  [SESSION_TOKEN_CLAIMS.maxTokens]: z.number().int().min(1),
  [SESSION_TOKEN_CLAIMS.temperature]: z.number().min(0).max(2),
  [SESSION_TOKEN_CLAIMS.agentId]: z.string().optional(),
  [SESSION_TOKEN_CLAIMS.clientId]: z.string().optional(),
  [SESSION_TOKEN_CLAIMS.parameters]: z.record(z.string(), z.string()).optional(),
  [SESSION_TOKEN_CLAIMS.promptSha256]: sha256Claim.optional(),
  [SESSION_TOKEN_CLAIMS.messagesSha256]: sha256Claim.optional(),
});

/** Claims of a session token (see {@link sessionTokenClaimsSchema}). */
export type SessionTokenClaims = z.infer<typeof sessionTokenClaimsSchema>;

const SHA256_CLAIM = /^[A-Za-z0-9_-]{43}$/;
const isString = (v: unknown): v is string => typeof v === 'string';
const isNumber = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v);
const optional = (v: unknown, check: (v: unknown) => boolean) => v === undefined || check(v);
const nonEmpty = (v: unknown) => isString(v) && v !== '';
const isSha256 = (v: unknown) => isString(v) && SHA256_CLAIM.test(v);
const isStringRecord = (v: unknown): v is Record<string, string> => {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return false;
  for (const key of Object.keys(v)) if (key === '__proto__' || !isString((v as Record<string, unknown>)[key])) return false;
  return true;
};

/**
 * The claims of a token's payload when they pass {@link sessionTokenClaimsSchema}, checked in
 * plain code (an agent reads them for every stream it admits, on its hot path); undefined when
 * they do not, and then the schema's `safeParse` says why. What it returns is what the schema
 * returns: the known claims, unknown ones left out.
 *
 * @example
 * ```ts
 * const claims = readSessionTokenClaims(payload) ?? sessionTokenClaimsSchema.parse(payload);
 * ```
 */
export function readSessionTokenClaims(payload: Readonly<Record<string, unknown>>): SessionTokenClaims | undefined {
  const { iss, aud, sub, jti, iat, nbf, exp } = payload;
  const jobId = payload[SESSION_TOKEN_CLAIMS.jobId];
  const model = payload[SESSION_TOKEN_CLAIMS.model];
  const maxTokens = payload[SESSION_TOKEN_CLAIMS.maxTokens];
  const temperature = payload[SESSION_TOKEN_CLAIMS.temperature];
  const agentId = payload[SESSION_TOKEN_CLAIMS.agentId];
  const clientId = payload[SESSION_TOKEN_CLAIMS.clientId];
  const parameters = payload[SESSION_TOKEN_CLAIMS.parameters];
  const prompt = payload[SESSION_TOKEN_CLAIMS.promptSha256];
  const messages = payload[SESSION_TOKEN_CLAIMS.messagesSha256];
  const valid =
    optional(iss, nonEmpty) &&
    optional(aud, (v) => isString(v) || (Array.isArray(v) && v.every(isString))) &&
    optional(sub, isString) &&
    nonEmpty(jti) &&
    optional(iat, isNumber) &&
    optional(nbf, isNumber) &&
    isNumber(exp) &&
    optional(jobId, nonEmpty) &&
    nonEmpty(model) &&
    Number.isSafeInteger(maxTokens) &&
    (maxTokens as number) >= 1 &&
    isNumber(temperature) &&
    temperature >= 0 &&
    temperature <= 2 &&
    optional(agentId, isString) &&
    optional(clientId, isString) &&
    optional(parameters, isStringRecord) &&
    optional(prompt, isSha256) &&
    optional(messages, isSha256);
  if (!valid) return undefined;
  const claims: Record<string, unknown> = {};
  const keep = (key: string, value: unknown) => {
    if (value !== undefined) claims[key] = value;
  };
  keep('iss', iss);
  keep('aud', Array.isArray(aud) ? [...aud] : aud);
  keep('sub', sub);
  keep('jti', jti);
  keep('iat', iat);
  keep('nbf', nbf);
  keep('exp', exp);
  keep(SESSION_TOKEN_CLAIMS.jobId, jobId);
  keep(SESSION_TOKEN_CLAIMS.model, model);
  keep(SESSION_TOKEN_CLAIMS.maxTokens, maxTokens);
  keep(SESSION_TOKEN_CLAIMS.temperature, temperature);
  keep(SESSION_TOKEN_CLAIMS.agentId, agentId);
  keep(SESSION_TOKEN_CLAIMS.clientId, clientId);
  keep(SESSION_TOKEN_CLAIMS.parameters, parameters === undefined ? undefined : { ...(parameters as Record<string, string>) });
  keep(SESSION_TOKEN_CLAIMS.promptSha256, prompt);
  keep(SESSION_TOKEN_CLAIMS.messagesSha256, messages);
  return claims as SessionTokenClaims;
}

/** What a coordinator grants; {@link sessionTokenPayload} turns it into the private claims. */
export interface SessionTokenGrant {
  /** The chosen agent (`aud`, and v1's `agent_id`). */
  agentId: string;
  /** The client (`sub`, and v1's `client_id`). */
  clientId: string;
  jobId: string;
  model: string;
  maxTokens: number;
  temperature: number;
  /** Engine parameters the client asked for (claim `parameters`), if any. */
  parameters?: Record<string, string> | undefined;
  /** The prompt the token is for. Only its hash is signed (claim `prompt_sha256`). */
  prompt?: string | undefined;
  /**
   * The chat messages the token is for, when the request has any. Only their hash is signed
   * (claim `messages_sha256`, see {@link messagesSha256}); empty or absent signs no claim.
   */
  messages?: readonly SessionTokenChatMessage[] | undefined;
}

/**
 * The private claims (everything but `iss`, `aud`, `sub`, `jti`, `iat`, `nbf`, `exp`) of a grant,
 * in the order the coordinator signs them. `parameters` is left out when empty, `prompt_sha256`
 * when the grant has no prompt, `messages_sha256` when it has no messages.
 *
 * @example
 * ```ts
 * const payload = sessionTokenPayload({ agentId: 'a', clientId: 'c', jobId: 'j', model: 'm', maxTokens: 8, temperature: 0.7, prompt: 'hi' });
 * ```
 */
export function sessionTokenPayload(grant: SessionTokenGrant): Record<string, unknown> {
  const payload: Record<string, unknown> = {
    [SESSION_TOKEN_CLAIMS.jobId]: grant.jobId,
    [SESSION_TOKEN_CLAIMS.model]: grant.model,
    [SESSION_TOKEN_CLAIMS.maxTokens]: grant.maxTokens,
    [SESSION_TOKEN_CLAIMS.temperature]: grant.temperature,
    [SESSION_TOKEN_CLAIMS.agentId]: grant.agentId,
    [SESSION_TOKEN_CLAIMS.clientId]: grant.clientId,
  };
  if (grant.parameters && Object.keys(grant.parameters).length > 0) payload[SESSION_TOKEN_CLAIMS.parameters] = grant.parameters;
  if (grant.prompt !== undefined) payload[SESSION_TOKEN_CLAIMS.promptSha256] = promptSha256(grant.prompt);
  if (grant.messages && grant.messages.length > 0) payload[SESSION_TOKEN_CLAIMS.messagesSha256] = messagesSha256(grant.messages);
  return payload;
}

/**
 * The first difference between the engine parameters a StreamRequest sends (`options`) and the
 * ones its token grants, or undefined when they are equal. An empty `requested` map means "the
 * granted ones" and never differs. The key named is the first (sorted) that is missing, extra
 * or has another value.
 *
 * @example
 * ```ts
 * parametersMismatch({ top_k: '40' }, { top_k: '5' }); // { key: 'top_k', requested: '5', granted: '40' }
 * ```
 */
export function parametersMismatch(
  granted: Readonly<Record<string, string>> | undefined,
  requested: Readonly<Record<string, string>>,
): { key: string; requested: string | undefined; granted: string | undefined } | undefined {
  if (Object.keys(requested).length === 0) return undefined;
  const g = granted ?? {};
  const keys = [...new Set([...Object.keys(g), ...Object.keys(requested)])].sort();
  for (const key of keys) {
    const want = Object.hasOwn(requested, key) ? requested[key] : undefined;
    const have = Object.hasOwn(g, key) ? g[key] : undefined;
    if (want !== have) return { key, requested: want, granted: have };
  }
  return undefined;
}

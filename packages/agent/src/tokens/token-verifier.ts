import type { KeyObject } from 'node:crypto';
import { Status } from 'nice-grpc-common';
import {
  messagesSha256,
  parametersMismatch,
  promptSha256,
  SESSION_TOKEN_ALGORITHM,
  SESSION_TOKEN_ISSUER,
  SESSION_TOKEN_MAX_CLOCK_TOLERANCE_SEC,
  SESSION_TOKEN_REQUIRED_CLAIMS,
  readSessionTokenClaims,
  sessionTokenClaimsSchema,
  type SessionTokenClaims,
  type PublicKeyResponse,
  type SessionTokenChatMessage,
} from '@titancompute/protocol';
import type { Logger } from '@titancompute/server-kit';
import { ReplayStoreError, TokenError } from '../errors.js';
import { importEd25519PublicKey, parseCompactJws, verifyEdDsaJwt } from './eddsa-jwt.js';
import { createReplayCache, type ReplayCache } from './replay-cache.js';

/** What a verified session token grants. */
export interface SessionGrant {
  jti: string;
  /** The token's `job_id` (falls back to the jti for tokens without one). */
  jobId: string;
  clientId: string;
  model: string;
  maxTokens: number;
  temperature: number;
  /**
   * The engine parameters granted (claim `parameters`; empty when the token has none). A
   * StreamRequest sends the same `options` again or none, and then runs with these.
   */
  parameters: Record<string, string>;
  /** The `prompt_sha256` claim (base64url SHA-256 of the UTF-8 prompt); undefined for tokens of an older coordinator. */
  promptSha256: string | undefined;
  /** The `messages_sha256` claim (see the contract's `messagesSha256`); undefined for prompt tokens and tokens of an older coordinator. */
  messagesSha256: string | undefined;
  /** Unix ms. */
  expiresAtMs: number;
}

/** What the StreamRequest asks for, checked against the token before its jti is used up. */
export interface RequestBinding {
  /** StreamRequest.prompt: must hash to the token's `prompt_sha256`. */
  prompt: string;
  /**
   * StreamRequest.messages: must hash to the token's `messages_sha256`; a token that binds a
   * prompt (`prompt_sha256` without `messages_sha256`) grants none. Default none.
   */
  messages?: readonly SessionTokenChatMessage[];
  /** StreamRequest.temperature: 0 (unset) or the token's temperature (to float32 precision). */
  temperature: number;
  /** StreamRequest.options: empty (unset) or exactly the token's `parameters`. Default empty. */
  options?: Readonly<Record<string, string>>;
}

/** Options of {@link createTokenVerifier}. */
export interface TokenVerifierOptions {
  /** This agent's id: tokens must name it in `aud`. */
  agentId: string;
  /** Fetches the coordinator's keys (GetPublicKey). */
  fetchKeys: () => Promise<PublicKeyResponse>;
  /** Expected `iss` when the coordinator does not say. Default `titancompute-coordinator`. */
  issuer?: string;
  /** Clock tolerance for exp/nbf, seconds (≤ 5). Default 5. */
  clockToleranceSec?: number;
  /** Minimum time between two key refetches caused by unknown key ids. Default 1000 ms. */
  refetchIntervalMs?: number;
  /** Bound of the replay cache. Default 100 000. */
  maxReplayEntries?: number;
  /**
   * Where used jtis are remembered. Default: an in-memory cache (lost on restart); the agent
   * passes the SQLite one of its data dir. The verifier does not close it.
   */
  replayCache?: ReplayCache;
  /**
   * Refuse (PERMISSION_DENIED) tokens without a `prompt_sha256` claim, i.e. tokens of a
   * coordinator older than this agent. Default false: they are accepted (and logged once), so
   * agents can be upgraded before the coordinator.
   */
  requirePromptBinding?: boolean;
  logger?: Logger;
}

/** A token {@link TokenVerifier.admit} accepted: used up, and on its way to disk. */
export interface AdmittedToken {
  grant: SessionGrant;
  /**
   * Resolves once the token's use is on disk (at once with an in-memory replay cache). Until it
   * does, nothing of the job may reach the caller: a crash of the machine before it could
   * forget the use, and the token would then work once more (a job whose output never left
   * is the only one that may run twice). Rejects with {@link TokenError} UNAVAILABLE when the
   * replay store cannot flush.
   */
  recorded: Promise<void>;
}

/** Verifies session tokens against the coordinator's keys. */
export interface TokenVerifier {
  /**
   * Verifies a token (signature, iss, aud, exp/nbf, claims), checks the request against it
   * (`binding`: prompt and messages hashes, temperature, engine options), runs `authorize`, and only then consumes its jti
   * (durably, for a persistent replay cache, before this resolves). Throws {@link TokenError}:
   * UNAUTHENTICATED (bad, expired, replayed), PERMISSION_DENIED (another agent, another prompt,
   * messages, temperature or options, or whatever `authorize` refuses), UNAVAILABLE (no keys, replay store
   * unwritable). A request refused by the binding or by `authorize` does not burn the token.
   * Every refusal of a token whose signature is valid carries its `jobId`.
   */
  verify(token: string, authorize?: (grant: SessionGrant) => void, binding?: RequestBinding): Promise<SessionGrant>;
  /**
   * {@link TokenVerifier.verify} without waiting for the disk: resolves as soon as the jti is
   * used up (committed: no other verification accepts it, in this process or another on the same
   * store), with `recorded`, which resolves once that is on disk. A job can start on its engine
   * meanwhile (the flush takes about as long as a prompt's evaluation) and hold its output until
   * `recorded`; the job runner does.
   */
  admit(token: string, authorize?: (grant: SessionGrant) => void, binding?: RequestBinding): Promise<AdmittedToken>;
  /** Fetches the keys now (at start and after re-registering). Never throws; false on failure. */
  refresh(): Promise<boolean>;
  /** Ids of the keys currently known. */
  readonly keyIds: readonly string[];
}

/** base64url SHA-256 of a prompt's UTF-8 bytes: the `prompt_sha256` claim (the contract's helper, re-exported). */
export { promptSha256 };
/** base64url SHA-256 of chat messages' canonical JSON: the `messages_sha256` claim (the contract's helper, re-exported). */
export { messagesSha256 };

/** Temperatures travel as float32 and are signed rounded to 6 decimals: compare at that precision. */
const sameTemperature = (a: number, b: number) => Math.round(Math.fround(a) * 1e6) === Math.round(Math.fround(b) * 1e6);

/**
 * Checks a request against its grant: the prompt hash (when the token carries one), the
 * temperature (0 = unset = the token's) and the engine options (empty = the token's
 * `parameters`). Throws PERMISSION_DENIED naming the field.
 */
function checkBinding(grant: SessionGrant, binding: RequestBinding, requirePromptBinding: boolean): void {
  if (grant.promptSha256 !== undefined) {
    if (promptSha256(binding.prompt) !== grant.promptSha256) {
      throw new TokenError('prompt does not match the session token (send the prompt given to RequestInference)', Status.PERMISSION_DENIED, {
        field: 'prompt',
      });
    }
  } else if (requirePromptBinding) {
    throw new TokenError(
      'session token has no prompt_sha256 claim (issued by an older coordinator); this agent requires prompt-bound tokens',
      Status.PERMISSION_DENIED,
      { field: 'prompt' },
    );
  }
  const messages = binding.messages ?? [];
  if (grant.messagesSha256 !== undefined) {
    if (messagesSha256(messages) !== grant.messagesSha256) {
      throw new TokenError('messages do not match the session token (send the messages given to RequestInference)', Status.PERMISSION_DENIED, {
        field: 'messages',
      });
    }
  } else if (grant.promptSha256 !== undefined && messages.length > 0) {
    throw new TokenError('messages were sent but the session token grants a prompt, not messages', Status.PERMISSION_DENIED, { field: 'messages' });
  }
  if (binding.temperature !== 0 && !sameTemperature(binding.temperature, grant.temperature)) {
    throw new TokenError(
      `temperature ${Math.round(Math.fround(binding.temperature) * 1e6) / 1e6} does not match the session token's ${grant.temperature} (send the same value or leave it unset)`,
      Status.PERMISSION_DENIED,
      { field: 'temperature' },
    );
  }
  const diff = parametersMismatch(grant.parameters, binding.options ?? {});
  if (diff) {
    const field = `options.${diff.key}`;
    const what =
      diff.requested === undefined
        ? `${field} is missing: the session token grants ${JSON.stringify(diff.granted)}`
        : diff.granted === undefined
          ? `${field} ${JSON.stringify(diff.requested)} is not in the session token's parameters`
          : `${field} ${JSON.stringify(diff.requested)} does not match the session token's ${JSON.stringify(diff.granted)}`;
    throw new TokenError(`${what} (send the parameters given to RequestInference, or none)`, Status.PERMISSION_DENIED, { field });
  }
}

/** The claims by the contract's schema (the slow path), or the refusal naming the first bad claim. */
function claimsBySchema(payload: Record<string, unknown>, jobId: string | undefined): SessionTokenClaims {
  const claims = sessionTokenClaimsSchema.safeParse(payload);
  if (claims.success) return claims.data;
  const issue = claims.error.issues[0];
  throw new TokenError(`session token claim ${issue?.path.join('.') ?? '?'} is missing or invalid`, Status.UNAUTHENTICATED, {}, { jobId });
}

/** The default `iss` of TitanCompute session tokens (the contract's `SESSION_TOKEN_ISSUER`). */
export const DEFAULT_ISSUER = SESSION_TOKEN_ISSUER;

/**
 * Creates a {@link TokenVerifier}: EdDSA only, keys by `kid` (refetched once, rate-limited, on
 * an unknown kid), each jti accepted once until it expires. There is no fallback: without
 * keys every token is refused with UNAVAILABLE.
 *
 * @example
 * ```ts
 * const verifier = createTokenVerifier({ agentId: 'gpu-1', fetchKeys: () => coordinator.getPublicKey({}) });
 * const grant = await verifier.verify(request.sessionToken); // grant.model, grant.maxTokens, grant.jobId
 * ```
 */
export function createTokenVerifier(options: TokenVerifierOptions): TokenVerifier {
  const tolerance = Math.min(SESSION_TOKEN_MAX_CLOCK_TOLERANCE_SEC, options.clockToleranceSec ?? SESSION_TOKEN_MAX_CLOCK_TOLERANCE_SEC);
  const refetchIntervalMs = options.refetchIntervalMs ?? 1000;
  const replay: ReplayCache = options.replayCache ?? createReplayCache({ maxEntries: options.maxReplayEntries ?? 100_000 });
  const requirePromptBinding = options.requirePromptBinding ?? false;
  let warnedUnbound = false;
  let keys = new Map<string, KeyObject>();
  let currentKid: string | undefined;
  let issuer = options.issuer ?? DEFAULT_ISSUER;
  let lastFetch = 0;
  let inflight: Promise<boolean> | undefined;

  const load = async (): Promise<boolean> => {
    lastFetch = Date.now();
    try {
      const res = await options.fetchKeys();
      const next = new Map<string, KeyObject>();
      const entries = res.keys.length > 0 ? res.keys : [{ keyId: res.keyId, publicKeyPem: res.publicKeyPem, algorithm: res.algorithm, retireAt: 0 }];
      for (const k of entries) {
        if (!k.publicKeyPem || (k.algorithm && k.algorithm !== SESSION_TOKEN_ALGORITHM)) continue;
        try {
          next.set(k.keyId, importEd25519PublicKey(k.publicKeyPem));
        } catch (err) {
          options.logger?.warn({ err, keyId: k.keyId }, 'ignoring a public key that does not parse as an Ed25519 SPKI PEM');
        }
      }
      if (next.size === 0) {
        options.logger?.warn({ algorithm: res.algorithm }, 'coordinator returned no usable EdDSA key');
        return false;
      }
      keys = next;
      currentKid = res.keyId || entries[0]?.keyId;
      if (res.issuer) issuer = res.issuer;
      options.logger?.debug({ keyIds: [...keys.keys()] }, 'session token keys loaded');
      return true;
    } catch (err) {
      options.logger?.warn({ err: (err as Error).message }, 'cannot fetch session token keys from the coordinator');
      return false;
    }
  };
  const refresh = (): Promise<boolean> => {
    inflight ??= load().finally(() => {
      inflight = undefined;
    });
    return inflight;
  };

  const keyFor = async (kid: string | undefined): Promise<KeyObject> => {
    if (keys.size === 0) {
      if (inflight) await inflight;
      else if (Date.now() - lastFetch >= refetchIntervalMs || lastFetch === 0) await refresh();
      if (keys.size === 0) throw new TokenError('session token keys are unavailable (coordinator unreachable); try again later', Status.UNAVAILABLE);
    }
    const id = kid ?? currentKid;
    let key = id === undefined ? undefined : keys.get(id);
    if (!key && kid !== undefined && (inflight || Date.now() - lastFetch >= refetchIntervalMs)) {
      await refresh();
      key = keys.get(kid);
    }
    if (!key) throw new TokenError(`session token signed with unknown key id ${JSON.stringify(kid ?? '')}`, Status.UNAUTHENTICATED, { kid });
    return key;
  };

  /** Everything but using the token up: signature and claims, then the request's binding and `authorize`. */
  const check = async (token: string, authorize?: (grant: SessionGrant) => void, binding?: RequestBinding): Promise<SessionGrant> => {
    if (!token) throw new TokenError('session_token is required', Status.UNAUTHENTICATED, { field: 'session_token' });
    // Keys never fetched yet: fetch them first, so the coordinator's issuer (not the default) is checked.
    if (lastFetch === 0) await refresh();
    const jws = parseCompactJws(token);
    const kid = jws.header.kid === undefined ? undefined : String(jws.header.kid);
    const key = await keyFor(kid);
    // node:crypto on the event loop (see eddsa-jwt.ts): no thread-pool hop before a stream's first token.
    const payload = verifyEdDsaJwt(jws, key, { issuer, clockToleranceSec: tolerance, requiredClaims: SESSION_TOKEN_REQUIRED_CLAIMS });
    // From here on the signature is valid: every refusal names the token's job.
    const signedJobId =
      typeof payload.job_id === 'string' && payload.job_id !== '' ? payload.job_id : typeof payload.jti === 'string' ? payload.jti : undefined;
    const aud = payload.aud;
    const audiences = Array.isArray(aud) ? aud : aud === undefined ? [] : [aud];
    if (!audiences.includes(options.agentId)) {
      throw new TokenError(
        `session token is for agent ${JSON.stringify(audiences.join(','))}, not this agent (${options.agentId})`,
        Status.PERMISSION_DENIED,
        { aud: audiences },
        { jobId: signedJobId },
      );
    }
    // Checked in plain code; the schema only says what is wrong with claims that fail.
    const c = readSessionTokenClaims(payload) ?? claimsBySchema(payload, signedJobId);
    const expiresAtMs = c.exp * 1000;
    const grant: SessionGrant = {
      jti: c.jti,
      jobId: c.job_id ?? c.jti,
      clientId: c.sub ?? c.client_id ?? '',
      model: c.model,
      maxTokens: c.max_tokens,
      temperature: c.temperature,
      parameters: c.parameters ?? {},
      promptSha256: c.prompt_sha256,
      messagesSha256: c.messages_sha256,
      expiresAtMs,
    };
    const jobId = grant.jobId;
    try {
      if (binding) checkBinding(grant, binding, requirePromptBinding);
      authorize?.(grant);
    } catch (err) {
      throw err instanceof TokenError ? err.withJobId(jobId) : err;
    }
    if (grant.promptSha256 === undefined && !warnedUnbound) {
      warnedUnbound = true;
      options.logger?.warn({ jobId }, 'accepting a session token without prompt_sha256 (older coordinator): its prompt is not bound; upgrade the coordinator');
    }
    return grant;
  };

  /** A replay store failure as the caller sees it (logged: the agent cannot take work until the store works). */
  const storeFailure = (err: unknown, jobId: string) => {
    if (!(err instanceof ReplayStoreError)) return err;
    options.logger?.error({ err, jobId }, 'cannot record a used session token');
    return new TokenError('cannot record the session token as used; try again later', Status.UNAVAILABLE, {}, { cause: err, jobId });
  };

  /** Uses a checked token up (committed to the replay store, not yet on disk). */
  const claim = (grant: SessionGrant): void => {
    const { jobId } = grant;
    let outcome: ReturnType<typeof replay.claim>;
    try {
      outcome = replay.claim(grant.jti, grant.expiresAtMs + tolerance * 1000);
    } catch (err) {
      throw storeFailure(err, jobId);
    }
    if (outcome === 'replayed') throw new TokenError('token already used', Status.UNAUTHENTICATED, { jti: grant.jti }, { jobId });
    if (outcome === 'full') throw new TokenError('too many live session tokens; try again later', Status.UNAVAILABLE, {}, { jobId });
  };

  const admit = async (token: string, authorize?: (grant: SessionGrant) => void, binding?: RequestBinding): Promise<AdmittedToken> => {
    const grant = await check(token, authorize, binding);
    claim(grant);
    // Streams admitted together share one flush, off the event loop.
    const recorded = replay.whenDurable().catch((err: unknown) => {
      throw storeFailure(err, grant.jobId);
    });
    // A job closed before its first output never waits for it: not an unhandled rejection.
    recorded.catch(() => undefined);
    return { grant, recorded };
  };

  return {
    refresh,
    get keyIds() {
      return [...keys.keys()];
    },
    admit,
    async verify(token, authorize, binding) {
      const { grant, recorded } = await admit(token, authorize, binding);
      await recorded;
      return grant;
    },
  };
}

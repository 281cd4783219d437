import type { Logger } from '@titancompute/server-kit';
import { ApiKeyAuthError, ApiKeyNotFoundError, InvalidRequestError, ModelNotAllowedError, QuotaExceededError, type QuotaKind } from '../errors.js';
import { apiKeyState, API_KEY_SECRET_PREFIX, generateApiKeySecret, hashApiKeySecret, type ApiKeyRecord } from './api-key.js';
import { validateCreateApiKey, type CreateApiKeyInput } from './api-key-input.js';
import type { ApiKeyStore, SharedQuotaTake, SharedWindowUsage } from './api-key-store.js';
import { formatResetDuration, RATE_WINDOW_MS, SlidingWindow } from './sliding-window.js';

/** Values of `--auth`: `auto` (the default) is `keys` while at least one active key exists, else `none`. */
export const AUTH_SETTINGS = ['auto', 'none', 'keys'] as const;
/** A value of `--auth`. */
export type AuthSetting = (typeof AUTH_SETTINGS)[number];
/** The mode in force: `keys` requires an API key on every inference request, `none` ignores credentials. */
export type AuthMode = 'none' | 'keys';

/** Default {@link ApiKeysOptions.jobGraceMs}: 1 h. */
export const DEFAULT_KEY_JOB_GRACE_MS = 3_600_000;
/** Default {@link ApiKeysOptions.refreshIntervalMs}: 5 s. */
export const DEFAULT_KEY_REFRESH_INTERVAL_MS = 5000;

/** Options of {@link createApiKeys}. */
export interface ApiKeysOptions {
  store: ApiKeyStore;
  /** Default `auto`. */
  auth?: AuthSetting;
  logger: Logger;
  /** Clock (ms). Default `Date.now`. */
  now?: () => number;
  /**
   * How long after its session token expired a granted job may still report its outcome and be
   * charged to its key. Default {@link DEFAULT_KEY_JOB_GRACE_MS}.
   */
  jobGraceMs?: number;
  /** How often the active keys are re-read from the store and forgotten jobs dropped. Default {@link DEFAULT_KEY_REFRESH_INTERVAL_MS}. */
  refreshIntervalMs?: number;
}

/** What an admitted request needs of {@link ApiKeys.admit}. */
export interface AdmissionRequest {
  model: string;
  /** Reservations plus running jobs the key's client id holds now. */
  held: number;
  /** When one of them may end (ms), asked only when the concurrency limit is reached. */
  concurrencyRetryAfterMs(): number;
}

/** A request that passed its key's checks; {@link KeyAdmission.commit} it once its slot is reserved. */
export interface KeyAdmission {
  readonly key: ApiKeyRecord;
  /**
   * Counts the grant: the requests window, `requests_total`/`last_used_at`, and the job (whose
   * token expires at `tokenExpiresAtMs`), so its reported tokens are charged to the key.
   */
  commit(jobId: string, tokenExpiresAtMs: number): void;
  /**
   * Takes the grant back: after {@link KeyAdmission.commit} (its token could not be signed) the
   * window and the job; before it (no slot could be reserved, e.g. the shared reservation found
   * every agent busy) the request grant the shared store recorded for it.
   */
  revert(): void;
  /** OpenAI-style `x-ratelimit-*` headers for the limits the key has (none: empty). */
  rateLimitHeaders(): Record<string, string>;
}

/** Options of {@link ApiKeys.authenticate}. */
export interface AuthenticateOptions {
  /**
   * With a shared store (PostgreSQL): also take the request's cluster-wide quota (see
   * {@link ApiKeys.authenticate}). Default true; false only identifies the key (e.g. `GET /v1/models`).
   */
  quota?: boolean;
}

/** A new key and its secret (shown once). */
export interface CreatedApiKey {
  key: ApiKeyRecord;
  /** `tk-…`: not stored anywhere. */
  secret: string;
}

/** A job outcome's fields that are charged. */
export interface ChargeableOutcome {
  jobId: string;
  promptTokens: number;
  tokensGenerated: number;
}

/**
 * API keys at run time: the auth mode (evaluated live), authentication of inference requests,
 * the per-key checks (models, expiry, budget, requests and tokens per sliding minute, concurrent
 * jobs), charging reported tokens, and key management (create, list, revoke) for the admin API.
 */
export interface ApiKeys {
  /** The mode in force now; a change (first key created, last one revoked or expired) is logged. */
  mode(): AuthMode;
  /**
   * In mode `none`: undefined (credentials are ignored). In mode `keys`: the key of an
   * `authorization: Bearer tk-…` value, or {@link ApiKeyAuthError} (missing, malformed, unknown,
   * revoked, expired). The key is read from the store on every call, so a revocation through
   * another coordinator sharing the store is refused at once.
   *
   * With a shared store (`ApiKeyStore.sharedQuotas`, PostgreSQL) and a key limited in requests
   * or tokens per minute, it also takes the request's quota in the database, atomically for the
   * whole cluster (a request grant is recorded when within the limits); {@link ApiKeys.admit}, called
   * with the returned record in the same turn, uses that outcome; a grant not admitted by the end
   * of that turn is given back. An admitted grant belongs to its {@link KeyAdmission}: committed
   * with the job it was reserved for (possibly after awaiting the shared reservation), or given
   * back by {@link KeyAdmission.revert}. `{ quota: false }` skips it.
   */
  authenticate(authorization: string | undefined, options?: AuthenticateOptions): Promise<ApiKeyRecord | undefined>;
  /**
   * Checks an authenticated request against its key: {@link ModelNotAllowedError}, then
   * {@link QuotaExceededError} for `budget`, `rpm`, `tpm`, `concurrency` (in that order). Synchronous,
   * so that a check and its {@link KeyAdmission.commit} are never interleaved with another request's.
   * Requests and tokens per minute are counted in memory (one coordinator), or for the whole
   * cluster by the shared store when {@link ApiKeys.authenticate} took the quota; concurrent jobs are
   * always those of this coordinator (`request.held`).
   */
  admit(key: ApiKeyRecord, request: AdmissionRequest): KeyAdmission;
  /** Charges a finished job's prompt and generated tokens to its key (jobs not granted with a key are ignored). */
  charge(outcome: ChargeableOutcome): void;
  /** Forgets a granted job that will never run (its agent refused the token). */
  forgetJob(jobId: string): void;
  /**
   * Takes a job another coordinator granted with key `keyId` (shared fleet: its outcome is reported
   * to this one), so its tokens are charged to that key. `tokenExpiresAtMs` as in `commit`.
   */
  adoptJob(jobId: string, keyId: string, tokenExpiresAtMs: number): void;
  /** Creates a key (validated; `InvalidRequestError`, `ApiKeyExistsError`). */
  create(input: CreateApiKeyInput): Promise<CreatedApiKey>;
  /** Keys, oldest first; revoked and expired ones only with `includeInactive`. */
  list(options?: { includeInactive?: boolean }): Promise<ApiKeyRecord[]>;
  /** Revokes a key by id or name ({@link ApiKeyNotFoundError} when none matches). */
  revoke(idOrName: string): Promise<ApiKeyRecord>;
  /** Re-reads which keys are active (also done every `refreshIntervalMs`). */
  refresh(): Promise<void>;
  /** Reads the keys, logs the mode and starts the refresh timer. */
  start(): Promise<void>;
  /** Stops the timer and closes the store. */
  stop(): Promise<void>;
}

interface KeyWindows {
  requests: SlidingWindow;
  tokens: SlidingWindow;
}

interface GrantedJob {
  keyId: string;
  untilMs: number;
}

/**
 * The cluster-wide quota {@link ApiKeys.authenticate} took for one request (shared store):
 * `pending` until admitted, `admitted` until committed; `done` once refused or given back.
 */
interface QuotaTicket {
  taken: SharedQuotaTake;
  state: 'pending' | 'admitted' | 'committed' | 'done';
}

const BEARER = /^Bearer\s+(\S+)\s*$/i;

/** Largest token count one outcome may charge per field (a sane bound on what agents report). */
const MAX_CHARGE_PER_FIELD = 1_000_000_000;

const chargeable = (n: number) => (Number.isFinite(n) && n > 0 ? Math.min(Math.floor(n), MAX_CHARGE_PER_FIELD) : 0);

const iso = (ms: number) => new Date(ms).toISOString();

/**
 * Creates the coordinator's {@link ApiKeys} over a store. Call `start()` before use and
 * `stop()` at shutdown.
 *
 * @example
 * ```ts
 * const keys = createApiKeys({ store: openSqliteApiKeyStore({ dataDir }), logger });
 * await keys.start();
 * const { secret } = await keys.create({ name: 'ci', requestsPerMinute: 60 });
 * const key = await keys.authenticate(`Bearer ${secret}`); // the key; mode is now `keys`
 * ```
 */
export function createApiKeys(options: ApiKeysOptions): ApiKeys {
  const { store, logger } = options;
  const setting = options.auth ?? 'auto';
  const now = options.now ?? Date.now;
  const jobGraceMs = options.jobGraceMs ?? DEFAULT_KEY_JOB_GRACE_MS;
  /** Non-revoked keys: how many never expire, and the expiries of the others. */
  let active = { neverExpiring: 0, expiries: [] as number[] };
  let lastMode: AuthMode | undefined;
  let timer: NodeJS.Timeout | undefined;
  const windows = new Map<string, KeyWindows>();
  const jobs = new Map<string, GrantedJob>();
  /** Quotas taken by authenticate(), keyed by the record it returned (the one admit() gets). */
  const tickets = new WeakMap<ApiKeyRecord, QuotaTicket>();
  let unwatch: (() => void) | undefined;

  const windowsOf = (keyId: string): KeyWindows => {
    let w = windows.get(keyId);
    if (!w) windows.set(keyId, (w = { requests: new SlidingWindow(), tokens: new SlidingWindow() }));
    return w;
  };
  const activeKeyCount = (t: number) => active.neverExpiring + active.expiries.filter((e) => e > t).length;
  const currentMode = (): AuthMode => {
    if (setting !== 'auto') return setting;
    const t = now();
    return active.neverExpiring > 0 || active.expiries.some((e) => e > t) ? 'keys' : 'none';
  };
  const mode = (): AuthMode => {
    const m = currentMode();
    if (lastMode !== undefined && m !== lastMode) {
      logger.info(
        { authMode: m, previous: lastMode, setting, activeKeys: activeKeyCount(now()) },
        m === 'keys'
          ? 'auth mode changed to keys: inference requests need an API key'
          : 'auth mode changed to none: no active API key, credentials are ignored',
      );
    }
    lastMode = m;
    return m;
  };
  const summarize = (keys: readonly ApiKeyRecord[]) => {
    const t = now();
    const next = { neverExpiring: 0, expiries: [] as number[] };
    for (const key of keys) {
      if (key.revokedAtMs !== undefined) continue;
      if (key.expiresAtMs === undefined) next.neverExpiring += 1;
      else if (key.expiresAtMs > t) next.expiries.push(key.expiresAtMs);
    }
    active = next;
  };
  const refresh = async () => {
    summarize(await store.list());
    mode();
  };
  const sweep = () => {
    const t = now();
    for (const [jobId, job] of jobs) if (job.untilMs <= t) jobs.delete(jobId);
    for (const [keyId, w] of windows) if (w.requests.isEmpty(t) && w.tokens.isEmpty(t)) windows.delete(keyId);
  };

  /** The key's `x-ratelimit-*` values at `t`, for the limits it has. */
  const rateLimitHeaders = (key: ApiKeyRecord, t: number): Record<string, string> => {
    const headers: Record<string, string> = {};
    const w = windows.get(key.id);
    if (key.requestsPerMinute > 0) {
      const used = w?.requests.used(t) ?? 0;
      headers['x-ratelimit-limit-requests'] = String(key.requestsPerMinute);
      headers['x-ratelimit-remaining-requests'] = String(Math.max(0, key.requestsPerMinute - used));
      headers['x-ratelimit-reset-requests'] = formatResetDuration(w?.requests.msUntilEmpty(t) ?? 0);
    }
    if (key.tokensPerMinute > 0) {
      const used = w?.tokens.used(t) ?? 0;
      headers['x-ratelimit-limit-tokens'] = String(key.tokensPerMinute);
      headers['x-ratelimit-remaining-tokens'] = String(Math.max(0, key.tokensPerMinute - used));
      headers['x-ratelimit-reset-tokens'] = formatResetDuration(w?.tokens.msUntilEmpty(t) ?? 0);
    }
    return headers;
  };
  const exceeded = (key: ApiKeyRecord, quota: QuotaKind, usage: { limit: number; used: number }, retryAfterMs: number | undefined, t: number) =>
    new QuotaExceededError(key.name, quota, usage, retryAfterMs, rateLimitHeaders(key, t));

  /** The key's `x-ratelimit-*` values from the cluster's usage a take measured (`counted`: plus its own grant). */
  const sharedRateLimitHeaders = (key: ApiKeyRecord, usage: SharedWindowUsage, counted: boolean, t: number): Record<string, string> => {
    const headers: Record<string, string> = {};
    const resetAfter = (lastAtMs: number | undefined) => (lastAtMs === undefined ? 0 : Math.max(0, lastAtMs + RATE_WINDOW_MS - t));
    if (key.requestsPerMinute > 0) {
      const used = usage.requests + (counted ? 1 : 0);
      headers['x-ratelimit-limit-requests'] = String(key.requestsPerMinute);
      headers['x-ratelimit-remaining-requests'] = String(Math.max(0, key.requestsPerMinute - used));
      headers['x-ratelimit-reset-requests'] = formatResetDuration(resetAfter(counted ? usage.atMs : usage.lastRequestAtMs));
    }
    if (key.tokensPerMinute > 0) {
      headers['x-ratelimit-limit-tokens'] = String(key.tokensPerMinute);
      headers['x-ratelimit-remaining-tokens'] = String(Math.max(0, key.tokensPerMinute - usage.tokens));
      headers['x-ratelimit-reset-tokens'] = formatResetDuration(resetAfter(usage.lastChargeAtMs));
    }
    return headers;
  };
  /** Ends a ticket: a grant it recorded (and nobody committed) is given back to the cluster. */
  const settle = (ticket: QuotaTicket) => {
    if (ticket.state === 'done') return;
    ticket.state = 'done';
    const { taken } = ticket;
    if (!taken.granted || taken.grantId === undefined) return;
    store.sharedQuotas
      ?.giveBack(taken.grantId)
      .catch((err: unknown) => logger.error({ err, grantId: taken.grantId }, 'could not give an API key request grant back'));
  };
  /** admit() for a request whose cluster-wide quota authenticate() took. */
  const admitShared = (key: ApiKeyRecord, ticket: QuotaTicket, request: AdmissionRequest, t: number): KeyAdmission => {
    const { taken } = ticket;
    if (!taken.granted) {
      ticket.state = 'done';
      throw new QuotaExceededError(
        key.name,
        taken.quota,
        { limit: taken.limit, used: taken.used },
        taken.retryAfterMs,
        sharedRateLimitHeaders(key, taken.usage, false, t),
      );
    }
    if (key.maxConcurrent > 0 && request.held >= key.maxConcurrent) {
      settle(ticket);
      throw new QuotaExceededError(
        key.name,
        'concurrency',
        { limit: key.maxConcurrent, used: request.held },
        Math.max(1, request.concurrencyRetryAfterMs()),
        sharedRateLimitHeaders(key, taken.usage, false, t),
      );
    }
    ticket.state = 'admitted';
    let committedJob: string | undefined;
    return {
      key,
      commit(jobId, tokenExpiresAtMs) {
        // Given back meanwhile (never here: the router commits or reverts, once): count it locally at least.
        if (ticket.state !== 'admitted') logger.warn({ keyId: key.id, jobId }, 'API key request grant committed after it was settled');
        const at = now();
        ticket.state = 'committed';
        jobs.set(jobId, { keyId: key.id, untilMs: Math.max(tokenExpiresAtMs, at) + jobGraceMs });
        committedJob = jobId;
        store.recordRequest(key.id, at).catch((err: unknown) => logger.error({ err, keyId: key.id }, 'could not record an API key request'));
      },
      revert() {
        if (committedJob !== undefined) jobs.delete(committedJob);
        committedJob = undefined;
        // Committed or only admitted: the grant goes back to the cluster (once).
        settle(ticket);
      },
      rateLimitHeaders: () => sharedRateLimitHeaders(key, taken.usage, ticket.state === 'committed', now()),
    };
  };

  return {
    mode,

    async authenticate(authorization, authOptions = {}) {
      if (mode() === 'none') return undefined;
      const how = `send "authorization: Bearer ${API_KEY_SECRET_PREFIX}…" (an operator creates keys with \`titan keys create\`)`;
      if (!authorization?.trim()) throw new ApiKeyAuthError('missing', `missing API key: this coordinator requires one; ${how}`);
      const secret = BEARER.exec(authorization.trim())?.[1];
      if (!secret?.startsWith(API_KEY_SECRET_PREFIX)) {
        throw new ApiKeyAuthError('malformed', `malformed API key: expected "Bearer ${API_KEY_SECRET_PREFIX}…"; ${how}`);
      }
      const key = await store.findBySecret(hashApiKeySecret(secret));
      const shown = `${secret.slice(0, 10)}…`;
      if (!key) throw new ApiKeyAuthError('unknown', `unknown API key ${shown}`);
      const t = now();
      const state = apiKeyState(key, t);
      if (state === 'revoked') {
        throw new ApiKeyAuthError('revoked', `API key "${key.name}" (${key.prefix}…) was revoked at ${iso(key.revokedAtMs!)}`, key.name);
      }
      if (state === 'expired') {
        throw new ApiKeyAuthError('expired', `API key "${key.name}" (${key.prefix}…) expired at ${iso(key.expiresAtMs!)}`, key.name);
      }
      const shared = store.sharedQuotas;
      if (shared && authOptions.quota !== false && (key.requestsPerMinute > 0 || key.tokensPerMinute > 0)) {
        const ticket: QuotaTicket = { taken: await shared.take(key.id, now()), state: 'pending' };
        tickets.set(key, ticket);
        // admit() comes in the turn this promise resolves in (microtasks, before any setImmediate):
        // a grant still pending then was never admitted (the request failed validation). An admitted
        // one is its admission's to commit or revert (the shared reservation is awaited in between).
        setImmediate(() => {
          if (ticket.state === 'pending') settle(ticket);
        });
      }
      return key;
    },

    admit(key, request) {
      if (key.models.length > 0 && !key.models.includes(request.model)) throw new ModelNotAllowedError(key.name, request.model, key.models);
      const t = now();
      const ticket = tickets.get(key);
      tickets.delete(key);
      if (key.budgetTokens > 0 && key.tokensUsed >= key.budgetTokens) {
        if (ticket) settle(ticket);
        throw exceeded(key, 'budget', { limit: key.budgetTokens, used: key.tokensUsed }, undefined, t);
      }
      if (ticket?.state === 'pending') return admitShared(key, ticket, request, t);
      if (ticket) logger.warn({ keyId: key.id }, 'API key quota ticket was given back before admission: counted by this coordinator only');
      const w = windowsOf(key.id);
      if (key.requestsPerMinute > 0) {
        const used = w.requests.used(t);
        if (used >= key.requestsPerMinute) {
          throw exceeded(key, 'rpm', { limit: key.requestsPerMinute, used }, w.requests.msUntilBelow(key.requestsPerMinute, t), t);
        }
      }
      if (key.tokensPerMinute > 0) {
        const used = w.tokens.used(t);
        if (used >= key.tokensPerMinute) {
          throw exceeded(key, 'tpm', { limit: key.tokensPerMinute, used }, w.tokens.msUntilBelow(key.tokensPerMinute, t), t);
        }
      }
      if (key.maxConcurrent > 0 && request.held >= key.maxConcurrent) {
        throw exceeded(key, 'concurrency', { limit: key.maxConcurrent, used: request.held }, Math.max(1, request.concurrencyRetryAfterMs()), t);
      }
      let committed: { jobId: string; event: object | undefined } | undefined;
      return {
        key,
        commit(jobId, tokenExpiresAtMs) {
          const at = now();
          const event = key.requestsPerMinute > 0 ? w.requests.add(at, 1) : undefined;
          // Windows may have been swept since admit(): keep this one.
          windows.set(key.id, w);
          jobs.set(jobId, { keyId: key.id, untilMs: Math.max(tokenExpiresAtMs, at) + jobGraceMs });
          committed = { jobId, event };
          store.recordRequest(key.id, at).catch((err: unknown) => logger.error({ err, keyId: key.id }, 'could not record an API key request'));
        },
        revert() {
          if (!committed) return;
          if (committed.event) w.requests.remove(committed.event);
          jobs.delete(committed.jobId);
          committed = undefined;
        },
        rateLimitHeaders: () => rateLimitHeaders(key, now()),
      };
    },

    charge(outcome) {
      const job = jobs.get(outcome.jobId);
      if (!job) return;
      jobs.delete(outcome.jobId);
      const tokens = chargeable(outcome.promptTokens) + chargeable(outcome.tokensGenerated);
      if (tokens === 0) return;
      const at = now();
      windowsOf(job.keyId).tokens.add(at, tokens);
      store.addTokens(job.keyId, tokens, at).catch((err: unknown) => logger.error({ err, keyId: job.keyId, tokens }, 'could not charge tokens to an API key'));
    },

    forgetJob(jobId) {
      jobs.delete(jobId);
    },

    adoptJob(jobId, keyId, tokenExpiresAtMs) {
      if (!jobs.has(jobId)) jobs.set(jobId, { keyId, untilMs: Math.max(tokenExpiresAtMs, now()) + jobGraceMs });
    },

    async create(input) {
      const v = validateCreateApiKey(input);
      const { secret, id, prefix } = generateApiKeySecret();
      const t = now();
      const key = await store.create(
        {
          id,
          name: v.name,
          prefix,
          secretSha256: hashApiKeySecret(secret),
          requestsPerMinute: v.requestsPerMinute,
          tokensPerMinute: v.tokensPerMinute,
          maxConcurrent: v.maxConcurrent,
          budgetTokens: v.budgetTokens,
          models: v.models,
          createdAtMs: t,
          expiresAtMs: v.expiresInSeconds > 0 ? t + v.expiresInSeconds * 1000 : undefined,
        },
        t,
      );
      logger.info(
        {
          keyId: key.id,
          keyName: key.name,
          prefix: key.prefix,
          requestsPerMinute: key.requestsPerMinute,
          tokensPerMinute: key.tokensPerMinute,
          maxConcurrent: key.maxConcurrent,
          budgetTokens: key.budgetTokens,
          models: key.models,
          expiresAt: key.expiresAtMs === undefined ? null : iso(key.expiresAtMs),
        },
        'API key created',
      );
      await refresh();
      return { key, secret };
    },

    async list(listOptions = {}) {
      const keys = await store.list();
      const t = now();
      return listOptions.includeInactive ? keys : keys.filter((k) => apiKeyState(k, t) === 'active');
    },

    async revoke(idOrName) {
      if (idOrName.trim() === '') throw new InvalidRequestError('key', 'is required (a key id or name)');
      const key = await store.revoke(idOrName, now());
      if (!key) throw new ApiKeyNotFoundError(idOrName);
      logger.info({ keyId: key.id, keyName: key.name, prefix: key.prefix }, 'API key revoked');
      await refresh();
      return key;
    },

    refresh,

    async start() {
      summarize(await store.list());
      lastMode = currentMode();
      logger.info(
        { authMode: lastMode, setting, activeKeys: activeKeyCount(now()), store: store.location },
        lastMode === 'keys' ? 'auth mode keys: inference requests need an API key' : 'auth mode none: credentials are ignored',
      );
      timer = setInterval(() => {
        sweep();
        refresh().catch((err: unknown) => logger.error({ err }, 'could not re-read the API keys'));
      }, options.refreshIntervalMs ?? DEFAULT_KEY_REFRESH_INTERVAL_MS);
      timer.unref();
      // A key created or revoked through another coordinator sharing the store: the auth mode follows at once.
      unwatch = store.watch?.(() => void refresh().catch((err: unknown) => logger.error({ err }, 'could not re-read the API keys')));
    },

    async stop() {
      if (timer) clearInterval(timer);
      timer = undefined;
      unwatch?.();
      unwatch = undefined;
      await store.close();
    },
  };
}

import type { ClientTlsOptions, ProtoVersionPolicy } from '@titancompute/protocol';
import {
  clientTlsFromConfig,
  COMMON_DEFAULTS,
  ConfigError,
  commonOptions,
  durationOption,
  enumOption,
  formatDuration,
  intOption,
  listOption,
  numberOption,
  portOption,
  requiredStringOption,
  serverTlsFromConfig,
  stringOption,
  type ConfigOf,
  type LOG_LEVELS,
  type Logger,
  type ServerTlsOptions,
} from '@titancompute/server-kit';
import { DEFAULT_HTTP_REQUEST_TIMEOUT_MS } from './http/http-server.js';
import { OPENAI_MODES, type OpenAiMode } from './http/openai-routes.js';
import type { EndpointVerifierOptions } from './identity/endpoint-verifier.js';
import { AUTH_SETTINGS, type AuthSetting } from './keys/api-keys.js';
import { DEFAULT_CLAIM_WINDOW_MS } from './registry/agent-registry.js';
import { DEFAULT_BREAKER_OPTIONS, type CircuitBreakerOptions } from './scheduler/circuit-breaker.js';
import type { PrefixRoutingMode } from './scheduler/prefix-affinity.js';
import { DEFAULT_PREFIX_LOAD_CAP, DEFAULT_WEIGHTS, type SchedulerWeights } from './scheduler/scheduler.js';
import { DEFAULT_BUSY_RETRY_HINT_MS, DEFAULT_MAX_CLIENT_SHARE } from './service/request-router.js';
import { STORE_KINDS, type StoreKind } from './store/coordinator-store.js';
import { KEYRING_SECRET_ENV, parseKeyringSecret } from './tokens/keyring-secret.js';
import { DEFAULT_ISSUER } from './tokens/session-token.js';

/** The service name: the bin's name and the `service` field of every log line. */
export const SERVICE_NAME = 'titan-coordinator';

/**
 * Every default of the coordinator, written once: `startCoordinator` applies them
 * ({@link resolveCoordinatorOptions}) and `titan-coordinator`'s flags show and use them
 * ({@link coordinatorConfigSpec}). The common ones come from server-kit's `COMMON_DEFAULTS`;
 * defaults of the parts that apply them themselves (claim window, breaker, weights, busy hint,
 * client share, REST timeout, issuer) come from those modules' constants.
 */
export const COORDINATOR_DEFAULTS = {
  host: COMMON_DEFAULTS.host,
  port: 50051,
  httpPort: 8080,
  httpRequestTimeoutMs: DEFAULT_HTTP_REQUEST_TIMEOUT_MS,
  heartbeatTimeoutMs: 30_000,
  heartbeatIntervalMs: 2_000,
  tokenTtlMs: 300_000,
  claimWindowMs: DEFAULT_CLAIM_WINDOW_MS,
  maxClientShare: DEFAULT_MAX_CLIENT_SHARE,
  busyRetryHintMs: DEFAULT_BUSY_RETRY_HINT_MS,
  issuer: DEFAULT_ISSUER,
  maxTokensLimit: 4096,
  maxPromptBytes: 32 * 1024,
  /** Empty: any model some agent serves. */
  allowedModels: [] as readonly string[],
  weights: DEFAULT_WEIGHTS,
  prefixRouting: 'approximate',
  prefixLoadCap: DEFAULT_PREFIX_LOAD_CAP,
  breaker: DEFAULT_BREAKER_OPTIONS,
  /** How often the keyring file is re-read for rotations (ms). */
  keyReloadIntervalMs: 1000,
  protoVersionPolicy: COMMON_DEFAULTS.protoVersionPolicy,
  shutdownTimeoutMs: COMMON_DEFAULTS.shutdownTimeoutMs,
  logLevel: COMMON_DEFAULTS.logLevel,
  verifyAgentEndpoints: true,
  /** `keys` while at least one active API key exists, else `none` (evaluated live). */
  auth: 'auto',
  /** Durable state in SQLite in the data dir: zero set-up. */
  store: 'sqlite',
  openAiMode: 'relay',
} as const satisfies { [K in keyof CoordinatorOptions]?: CoordinatorOptions[K] };

/** Options of `startCoordinator`. Every field but `dataDir` has a default ({@link COORDINATOR_DEFAULTS}). */
export interface CoordinatorOptions {
  /** Listen address. Default `0.0.0.0`. */
  host?: string;
  /** gRPC port; 0 picks a free one. Default 50051. */
  port?: number;
  /** HTTP port (REST + /metrics); 0 picks a free one. Default 8080. */
  httpPort?: number;
  /** A REST client must send its whole request within this, or gets 408. Default 30 s. */
  httpRequestTimeoutMs?: number;
  /**
   * State: `join-token`, `admin-token`, and with `store: 'sqlite'` also `keys/keyring.json` and
   * `coordinator.db` (API keys, agent identities).
   */
  dataDir: string;
  /**
   * Where API keys and usage, agent identities and the signing keyring live: `sqlite` (in
   * `dataDir`) or `postgres` (`postgresUrl`, shared by every replica; needs `keyringSecret`).
   * Default `sqlite`.
   */
  store?: StoreKind;
  /** With `store: 'postgres'`: `postgres://user[:password]@host:port/database`. */
  postgresUrl?: string | undefined;
  /**
   * With `store: 'postgres'`: 32 bytes, base64 or hex, the AES-256-GCM key that seals the signing
   * keys in the database; every replica needs the same one.
   */
  keyringSecret?: string | undefined;
  /** Join token; when absent it is read from (or generated into) `<dataDir>/join-token`. */
  joinToken?: string | undefined;
  /**
   * Admin credential of the AdminService and `/admin/keys` (managing API keys); when absent it is
   * read from (or generated into) `<dataDir>/admin-token`.
   */
  adminToken?: string | undefined;
  /**
   * Authentication of inference requests: `keys` (an API key, `authorization: Bearer tk-…`, on
   * RequestInference, `POST /api/v1/inference/request` and `/v1/*`), `none` (credentials ignored,
   * client_id as given) or `auto`: `keys` whenever at least one active key exists. Default `auto`.
   */
  auth?: AuthSetting;
  /** Default 30 s. */
  heartbeatTimeoutMs?: number;
  /** Interval agents are told to use. Default 2 s. */
  heartbeatIntervalMs?: number;
  /** Session token lifetime. Default 5 min. */
  tokenTtlMs?: number;
  /** How long a granted slot stays reserved unless the agent reports the job started. Default 10 s. */
  claimWindowMs?: number;
  /** Share (0-1] of the fleet's slots one client_id may hold (at least 1 slot). Default 0.5. */
  maxClientShare?: number;
  /**
   * How the OpenAI-compatible `/v1/*` routes carry tokens: `relay` (the coordinator relays the
   * agent's stream; every client works) or `redirect` (307 to the agent's own route with the
   * session token; zero-proxy for clients that follow redirects). Default `relay`.
   */
  openAiMode?: OpenAiMode;
  /** Retry hint (ms) of busy answers when running jobs block. Default 250 ms. */
  busyRetryHintMs?: number;
  /** Token issuer. Default "titancompute-coordinator". */
  issuer?: string;
  /** Default 4096. */
  maxTokensLimit?: number;
  /** Default 32768. */
  maxPromptBytes?: number;
  /** Empty or absent: any model. */
  allowedModels?: readonly string[];
  /** Score weights; missing ones keep their default (0.4 / 0.3 / 0.2 / 0.1). */
  weights?: Partial<SchedulerWeights>;
  /**
   * Prefix-aware routing: `approximate` (default) scores each agent by the share of the request's
   * prompt prefix it was sent before (its KV cache likely still holds it); `precise` by the share
   * its engine reports holding (llama-cpp agents; agents that report nothing fall back to
   * approximate); `off`: load only.
   */
  prefixRouting?: PrefixRoutingMode;
  /** Load (share of max_jobs) at or above which prefix affinity stops counting for an agent. Default 0.9. */
  prefixLoadCap?: number;
  /** Breaker thresholds; missing ones keep their default (3 failures, 30 s open, 2 successes). */
  breaker?: CircuitBreakerOptions;
  /** How often the keyring file is re-read for rotations. Default 1 s. */
  keyReloadIntervalMs?: number;
  /** Default `strict`. */
  protoVersionPolicy?: ProtoVersionPolicy;
  /** Drain deadline on stop. Default 10 s. */
  shutdownTimeoutMs?: number;
  /** Where logs go. Default: a new pino logger at `logLevel`. */
  logger?: Logger;
  /** Used when no logger is given. Default `info`. */
  logLevel?: (typeof LOG_LEVELS)[number];
  tls?: ServerTlsOptions | undefined;
  /** TLS of outgoing calls (endpoint checks of agents); the bin uses the server's files. Plaintext when absent. */
  clientTls?: ClientTlsOptions | undefined;
  /**
   * Dial every new or changed agent endpoint (grpc health SERVING + GetStatus with the agent's
   * id) before scheduling to it. Default true; false trusts registered endpoints (tests only).
   */
  verifyAgentEndpoints?: boolean;
  /** Retries and deadlines of the endpoint checks (defaults: 5 attempts, 250 ms → 4 s backoff, 3 s each, recheck after 30 s). */
  endpointVerification?: Omit<EndpointVerifierOptions, 'logger' | 'tls'>;
  /**
   * With `store: 'postgres'`: how often this replica writes the health snapshots of the agents
   * homed on it (one transaction) and announces what changed. Default 100 ms (updates that change
   * jobs are written at once).
   */
  fleetFlushIntervalMs?: number;
  /**
   * `host:port` of an instance manager: the dashboard's Instances page shows its instances and
   * relays its events (read-only; TLS as `clientTls`). Absent: that page says so.
   */
  instanceManager?: string | undefined;
}

/** The keys of {@link CoordinatorOptions} that {@link COORDINATOR_DEFAULTS} fills in. */
type DefaultedKey = Exclude<keyof typeof COORDINATOR_DEFAULTS, 'weights' | 'breaker'>;

/** `startCoordinator`'s options with every default applied. */
export type ResolvedCoordinatorOptions = Omit<CoordinatorOptions, DefaultedKey> & { [K in DefaultedKey]-?: NonNullable<CoordinatorOptions[K]> };

/**
 * Fills in every default ({@link COORDINATOR_DEFAULTS}); an option given as `undefined` counts
 * as absent. `weights` and `breaker` pass through: the scheduler and the breakers default each
 * missing field.
 */
export function resolveCoordinatorOptions(options: CoordinatorOptions): ResolvedCoordinatorOptions {
  const given = Object.fromEntries(Object.entries(options).filter(([, value]) => value !== undefined));
  const { weights: _weights, breaker: _breaker, ...defaults } = COORDINATOR_DEFAULTS;
  return { ...defaults, ...given } as ResolvedCoordinatorOptions;
}

const D = COORDINATOR_DEFAULTS;

/** The options every service shares, with the coordinator's port and v1's port variable. */
const common = commonOptions({ service: 'coordinator', port: D.port, portEnv: ['COORDINATOR_PORT'] });

/**
 * Every option of `titan-coordinator` (flags, environment variables, defaults): the common
 * service options plus the coordinator's own. The defaults are {@link COORDINATOR_DEFAULTS}.
 */
export function coordinatorConfigSpec() {
  return {
    ...common,
    httpPort: portOption({
      flag: 'http-port',
      env: ['TITAN_HTTP_PORT', 'COORDINATOR_HTTP_PORT'],
      default: String(D.httpPort),
      description: 'HTTP port of the v1 REST API and /metrics (0 picks a free port).',
    }),
    httpRequestTimeoutMs: durationOption(
      {
        flag: 'http-request-timeout',
        env: ['TITAN_HTTP_REQUEST_TIMEOUT'],
        default: formatDuration(D.httpRequestTimeoutMs),
        description: 'A REST client must send its whole request within this (headers within the lesser of this and 10s), or gets 408 and is disconnected.',
      },
      1,
    ),
    heartbeatTimeoutMs: durationOption(
      {
        flag: 'heartbeat-timeout',
        env: ['TITAN_HEARTBEAT_TIMEOUT', 'HEARTBEAT_TIMEOUT'],
        default: formatDuration(D.heartbeatTimeoutMs),
        description: 'An agent silent this long is evicted (within a second).',
      },
      100,
    ),
    heartbeatIntervalMs: durationOption(
      {
        flag: 'heartbeat-interval',
        env: ['TITAN_HEARTBEAT_INTERVAL'],
        default: formatDuration(D.heartbeatIntervalMs),
        description: 'Health update interval agents are told to use (rounded up to whole seconds on the wire).',
      },
      100,
    ),
    tokenTtlMs: durationOption(
      {
        flag: 'token-ttl',
        env: ['TITAN_TOKEN_TTL', 'TOKEN_TTL'],
        default: formatDuration(D.tokenTtlMs),
        description: 'Lifetime of session tokens (how long an agent accepts one; the slot is held only for --claim-window).',
      },
      1000,
      24 * 3_600_000,
    ),
    claimWindowMs: durationOption(
      {
        flag: 'claim-window',
        env: ['TITAN_CLAIM_WINDOW'],
        default: formatDuration(D.claimWindowMs),
        description: 'How long a granted slot stays reserved unless the agent reports the job started (or rejected).',
      },
      100,
      3_600_000,
    ),
    openAiMode: enumOption(
      {
        flag: 'openai-mode',
        env: ['TITAN_OPENAI_MODE'],
        default: D.openAiMode,
        description:
          'How /v1/* (OpenAI-compatible) requests get their tokens: relay (the coordinator relays the agent stream) or redirect (307 to the agent, which streams directly).',
      },
      OPENAI_MODES,
    ),
    maxClientShare: numberOption(
      {
        flag: 'max-client-share',
        env: ['TITAN_MAX_CLIENT_SHARE'],
        default: String(D.maxClientShare),
        description: "Share (0-1] of the fleet's slots one client_id may hold in reservations plus running jobs (at least 1 slot).",
      },
      0.01,
      1,
    ),
    adminToken: stringOption({
      flag: 'admin-token',
      env: ['TITAN_ADMIN_TOKEN'],
      description:
        'Admin credential for managing API keys (AdminService, /admin/keys, `titan keys`). When unset, one is generated into <data-dir>/admin-token (mode 0600) and reused.',
    }),
    auth: enumOption(
      {
        flag: 'auth',
        env: ['TITAN_AUTH'],
        default: D.auth,
        description:
          'Authentication of inference requests: keys (an API key, Authorization: Bearer tk-…, is required), none (credentials ignored), or auto: keys whenever at least one active key exists.',
      },
      AUTH_SETTINGS,
    ),
    store: enumOption(
      {
        flag: 'store',
        env: ['TITAN_STORE'],
        default: D.store,
        description:
          'Where API keys and usage, agent identities and the signing keyring live: sqlite (coordinator.db and keys/ in --data-dir) or postgres (--postgres-url; replicas share it, quotas count cluster-wide; needs --keyring-secret).',
      },
      STORE_KINDS,
    ),
    postgresUrl: stringOption({
      flag: 'postgres-url',
      env: ['TITAN_POSTGRES_URL'],
      description: 'With --store postgres: postgres://user[:password]@host:port/database (migrated at start, one replica at a time).',
    }),
    keyringSecret: stringOption({
      flag: 'keyring-secret',
      env: [KEYRING_SECRET_ENV],
      description:
        'With --store postgres: 32 random bytes, base64 or hex (openssl rand -base64 32), that encrypt the signing keys in PostgreSQL (AES-256-GCM); the same on every replica. Prefer the environment variable.',
    }),
    instanceManager: stringOption({
      flag: 'instance-manager',
      env: ['TITAN_INSTANCE_MANAGER'],
      description: "Instance manager host:port whose instances and events the dashboard shows (read-only; the coordinator's TLS files when --tls-* is set).",
    }),
    joinToken: stringOption({
      flag: 'join-token',
      env: ['TITAN_JOIN_TOKEN'],
      description: 'Secret agents must present to register. When unset, one is generated into <data-dir>/join-token (mode 0600) and reused.',
    }),
    issuer: requiredStringOption({
      flag: 'issuer',
      env: ['TITAN_ISSUER'],
      default: D.issuer,
      description: 'Issuer (iss) of session tokens.',
    }),
    maxTokensLimit: intOption(
      {
        flag: 'max-tokens-limit',
        env: ['TITAN_MAX_TOKENS_LIMIT'],
        default: String(D.maxTokensLimit),
        description: 'Largest max_tokens a request may ask for.',
      },
      1,
      1_000_000,
    ),
    maxPromptBytes: intOption(
      { flag: 'max-prompt-bytes', env: ['TITAN_MAX_PROMPT_BYTES'], default: String(D.maxPromptBytes), description: 'Largest prompt, in UTF-8 bytes.' },
      1,
      16 * 1024 * 1024,
    ),
    allowedModels: listOption({
      flag: 'allowed-models',
      env: ['TITAN_ALLOWED_MODELS'],
      description: 'Comma-separated models clients may request (empty: any model some agent serves).',
    }),
    weightMemory: numberOption(
      { flag: 'weight-memory', env: ['TITAN_WEIGHT_MEMORY'], default: String(D.weights.memory), description: 'Score weight of the free memory fraction.' },
      0,
      100,
    ),
    weightLoad: numberOption(
      { flag: 'weight-load', env: ['TITAN_WEIGHT_LOAD'], default: String(D.weights.load), description: 'Score weight of the free slot fraction.' },
      0,
      100,
    ),
    weightRtt: numberOption(
      { flag: 'weight-rtt', env: ['TITAN_WEIGHT_RTT'], default: String(D.weights.rtt), description: 'Score weight of the RTT term.' },
      0,
      100,
    ),
    prefixRouting: enumOption(
      {
        flag: 'prefix-routing',
        env: ['TITAN_PREFIX_ROUTING'],
        default: D.prefixRouting,
        description:
          'Prefix-aware routing: approximate (prefer the agent a prompt prefix was last sent to, its KV cache likely holds it), precise (prefer the agent whose engine reports holding it; agents that report nothing, such as Ollama or vLLM, as in approximate) or off (load only).',
      },
      ['approximate', 'precise', 'off'] as const,
    ),
    weightPrefix: numberOption(
      {
        flag: 'weight-prefix',
        env: ['TITAN_WEIGHT_PREFIX'],
        default: String(D.weights.prefix),
        description: 'Score weight of the prefix-affinity term (share of the prompt prefix an agent holds), counted under --prefix-load-cap.',
      },
      0,
      100,
    ),
    prefixLoadCap: numberOption(
      {
        flag: 'prefix-load-cap',
        env: ['TITAN_PREFIX_LOAD_CAP'],
        default: String(D.prefixLoadCap),
        description: 'Load (share of max_jobs) at or above which prefix affinity stops counting, so a hot prefix spills to other agents.',
      },
      0,
      1.01,
    ),
    weightPerformance: numberOption(
      {
        flag: 'weight-performance',
        env: ['TITAN_WEIGHT_PERFORMANCE'],
        default: String(D.weights.performance),
        description: 'Score weight of the tokens/s term.',
      },
      0,
      100,
    ),
    breakerFailures: intOption(
      {
        flag: 'breaker-failures',
        env: ['TITAN_BREAKER_FAILURES'],
        default: String(D.breaker.failureThreshold),
        description: "Consecutive failures (failed jobs, dropped health streams) that open an agent's circuit breaker.",
      },
      1,
      1000,
    ),
    breakerOpenMs: durationOption(
      {
        flag: 'breaker-open-duration',
        env: ['TITAN_BREAKER_OPEN_DURATION'],
        default: formatDuration(D.breaker.openDurationMs),
        description: 'How long an open breaker keeps an agent out before probing it (half-open).',
      },
      1,
    ),
    breakerSuccesses: intOption(
      {
        flag: 'breaker-successes',
        env: ['TITAN_BREAKER_SUCCESSES'],
        default: String(D.breaker.successThreshold),
        description: 'Successes in half-open that close the breaker.',
      },
      1,
      1000,
    ),
  };
}

/** The coordinator's parsed config. */
export type CoordinatorConfig = ConfigOf<ReturnType<typeof coordinatorConfigSpec>>;

/**
 * The store options of a parsed config (`--store`, `--postgres-url`, `--keyring-secret`). Throws
 * {@link ConfigError} (the bin exits 2) naming the missing flag when `--store postgres` lacks its
 * URL or keyring secret, or the secret is not 32 bytes in base64 or hex.
 */
export function coordinatorStoreFromConfig(
  config: Pick<CoordinatorConfig, 'store' | 'postgresUrl' | 'keyringSecret'>,
): Pick<CoordinatorOptions, 'store' | 'postgresUrl' | 'keyringSecret'> {
  if (config.store === 'sqlite') return { store: 'sqlite' };
  if (!config.postgresUrl?.trim()) {
    throw new ConfigError(
      '--store postgres needs --postgres-url (TITAN_POSTGRES_URL): the PostgreSQL database the replicas share, e.g. postgres://titan@db:5432/titan',
      {
        option: 'postgresUrl',
        source: '--postgres-url',
        expected: 'a postgres:// URL',
      },
    );
  }
  try {
    parseKeyringSecret(config.keyringSecret, `--keyring-secret (${KEYRING_SECRET_ENV})`);
  } catch (cause) {
    throw new ConfigError(
      (cause as Error).message,
      { option: 'keyringSecret', source: `--keyring-secret (${KEYRING_SECRET_ENV})`, expected: '32 bytes, base64 or hex' },
      { cause },
    );
  }
  return { store: 'postgres', postgresUrl: config.postgresUrl, keyringSecret: config.keyringSecret };
}

/** `startCoordinator`'s options (all but the logger) from `titan-coordinator`'s parsed config. */
export function coordinatorOptionsFromConfig(config: CoordinatorConfig): Omit<CoordinatorOptions, 'logger'> {
  return {
    ...coordinatorStoreFromConfig(config),
    host: config.host,
    port: config.port,
    httpPort: config.httpPort,
    httpRequestTimeoutMs: config.httpRequestTimeoutMs,
    dataDir: config.dataDir,
    joinToken: config.joinToken,
    adminToken: config.adminToken,
    auth: config.auth,
    heartbeatTimeoutMs: config.heartbeatTimeoutMs,
    heartbeatIntervalMs: config.heartbeatIntervalMs,
    tokenTtlMs: config.tokenTtlMs,
    claimWindowMs: config.claimWindowMs,
    maxClientShare: config.maxClientShare,
    openAiMode: config.openAiMode,
    issuer: config.issuer,
    maxTokensLimit: config.maxTokensLimit,
    maxPromptBytes: config.maxPromptBytes,
    allowedModels: config.allowedModels,
    weights: {
      memory: config.weightMemory,
      load: config.weightLoad,
      rtt: config.weightRtt,
      performance: config.weightPerformance,
      prefix: config.weightPrefix,
    },
    prefixRouting: config.prefixRouting,
    prefixLoadCap: config.prefixLoadCap,
    breaker: { failureThreshold: config.breakerFailures, openDurationMs: config.breakerOpenMs, successThreshold: config.breakerSuccesses },
    protoVersionPolicy: config.protoVersionPolicy,
    shutdownTimeoutMs: config.shutdownTimeoutMs,
    tls: serverTlsFromConfig(config),
    clientTls: clientTlsFromConfig(config),
    instanceManager: config.instanceManager,
  };
}

import { statSync } from 'node:fs';
import { z } from 'zod';
import type { ClientTlsOptions, ProtoVersionPolicy } from '@titancompute/protocol';
import {
  clientTlsFromConfig,
  COMMON_DEFAULTS,
  commonOptions,
  ConfigError,
  durationOption,
  enumOption,
  formatDuration,
  intOption,
  listOption,
  requiredStringOption,
  serverTlsFromConfig,
  stringOption,
  type ConfigOf,
  type LOG_LEVELS,
  type Logger,
  type OptionSpec,
  type ServerTlsOptions,
} from '@titancompute/server-kit';
import { ENGINE_NAMES, type Engine, type EngineName } from './engines/engine.js';
import { DEFAULT_HTTP_TIMEOUTS } from './engines/http-stream.js';
import { defaultLlamaThreads } from './engines/llama-cpp-engine.js';
import { DEFAULT_OLLAMA_HOST } from './engines/ollama-engine.js';
import { DEFAULT_OPENAI_API } from './engines/openai-engine.js';
import { parseCoordinatorAddresses } from './links/coordinator-addresses.js';
import { NVIDIA_SMI_DEFAULTS } from './stats/nvidia-smi.js';

/**
 * Every default of the agent, written once: `startAgent` applies them (through its options
 * schema) and `titan-agent`'s flags show and use them. The common ones come from server-kit's
 * `COMMON_DEFAULTS`; engine-level defaults (Ollama URL, HTTP deadlines, nvidia-smi) come from
 * the modules that apply them.
 */
export const AGENT_DEFAULTS = {
  host: COMMON_DEFAULTS.host,
  port: 50052,
  /**
   * The HTTP port (OpenAI-compatible `/v1/*` routes) is the gRPC port plus this (50062 for the
   * default 50052), or 0 (any free port) when the gRPC port is 0 or the sum is not a port.
   */
  httpPortOffset: 10,
  coordinator: 'localhost:50051',
  engine: 'llama-cpp',
  ollamaHost: DEFAULT_OLLAMA_HOST,
  openaiApi: DEFAULT_OPENAI_API,
  engineIdleTimeoutMs: DEFAULT_HTTP_TIMEOUTS.idleTimeoutMs,
  maxConcurrentJobs: 4,
  /** The queue holds this many jobs per concurrent job when `maxQueue` is unset. */
  queuedJobsPerSlot: 2,
  heartbeatIntervalMs: 2000,
  imHealthIntervalMs: 5000,
  nvidiaSmiPath: NVIDIA_SMI_DEFAULTS.binary,
  drainTimeoutMs: 30_000,
  maxPromptBytes: 32 * 1024,
  maxTokensLimit: 4096,
  protoVersionPolicy: COMMON_DEFAULTS.protoVersionPolicy,
  logLevel: COMMON_DEFAULTS.logLevel,
} as const satisfies {
  engine: EngineName;
  protoVersionPolicy: ProtoVersionPolicy;
  logLevel: (typeof LOG_LEVELS)[number];
  [key: string]: unknown;
};

/** Options of `startAgent`. Every field but `joinToken` has a default ({@link AGENT_DEFAULTS}). */
export interface StartAgentOptions {
  /** 1-128 characters of [A-Za-z0-9._:-]. Default `<hostname>-<port>`. */
  agentId?: string;
  /** Listen address. Default `0.0.0.0`. */
  host?: string;
  /** gRPC port; 0 picks a free one. Default 50052. */
  port?: number;
  /** Host clients dial (endpoint = publicHost:port). Default: the listen host, or for a wildcard host 127.0.0.1 when the coordinator is on loopback, else the machine's hostname. */
  publicHost?: string;
  /**
   * HTTP port of the OpenAI-compatible `/v1/*` routes; 0 picks a free one. Default: `port` + 10
   * (50062), or 0 when `port` is 0.
   */
  httpPort?: number;
  /**
   * `host:port` advertised for the HTTP routes (AgentRegistration.http_endpoint; the
   * coordinator relays or redirects OpenAI requests there). Default `publicHost:httpPort`
   * (derived like `endpoint`). Set it when clients reach the HTTP port by another name or port
   * (a proxy, a port mapping).
   */
  httpEndpoint?: string;
  /**
   * Port of the Prometheus `GET /metrics`: unset (or equal to the HTTP port) serves it on the
   * HTTP routes' server; another port (0 = a free one) starts a listener of its own.
   */
  metricsPort?: number;
  /** Coordinator `host:port`. Default `localhost:50051`. */
  /** Coordinator `host:port`, or several comma-separated (replicas: the agent fails over between them), or a name with several addresses. Default `localhost:50051`. */
  coordinator?: string;
  /** Join token sent as `authorization: Bearer …` to RegisterAgent/ReportHealth/DeregisterAgent. */
  joinToken: string;
  /**
   * Directory for the agent's own state (its credential, used token ids); created with mode 0700.
   * When unset the state lives in memory only and is lost on exit (tests).
   */
  dataDir?: string;
  /** Engine name or an {@link Engine} object. Default `llama-cpp`. */
  engine?: EngineName | Engine;
  /** GGUF file for llama-cpp. Default: the bundled tiny model. */
  modelPath?: string;
  /** Name the llama-cpp model is served under. Default: the file's basename without `.gguf`. */
  modelName?: string;
  /** Model names to advertise (SUPPORTED_MODELS); overrides what the engine lists. */
  supportedModels?: string[];
  /** Ollama models to pull at start (PRELOAD_MODELS). */
  preloadModels?: string[];
  /** llama.cpp CPU threads. Default: every core but one (see `defaultLlamaThreads`). */
  threads?: number;
  /**
   * llama.cpp context size per sequence (`--context-size`): the longest prompt plus max_tokens a
   * sequence holds, and the longest prefix it keeps warm. Default min(2048, the model's training context).
   */
  contextSize?: number;
  /** Ollama URL. Default `http://localhost:11434`. */
  ollamaHost?: string;
  /** OpenAI-compatible server URL (engine `openai`). */
  openaiUrl?: string;
  /** API key for the OpenAI-compatible server. */
  openaiApiKey?: string;
  /** `completions` (default) or `chat`. */
  openaiApi?: 'completions' | 'chat';
  /** Idle/total deadlines of HTTP engines, ms. Defaults 60 s / 10 min. */
  engineIdleTimeoutMs?: number;
  /** Total deadline of one HTTP engine call, ms. Default 10 min. */
  engineRequestTimeoutMs?: number;
  /** Jobs generating at once. Default 4. */
  maxConcurrentJobs?: number;
  /** Jobs waiting beyond that. Default 2 × maxConcurrentJobs. */
  maxQueue?: number;
  /** Health update interval until the coordinator says otherwise. Default 2000 ms. */
  heartbeatIntervalMs?: number;
  /** Registration retry backoff: first delay and cap. Defaults 250 ms / 10 s. */
  registerBackoffInitialMs?: number;
  /** Cap of the registration retry backoff. Default 10 s. */
  registerBackoffMaxMs?: number;
  /** Instance manager `host:port`; the link is off when unset. */
  instanceManager?: string;
  /** TryHealthCheck/metrics interval. Default 5000 ms. */
  imHealthIntervalMs?: number;
  /** nvidia-smi binary. Default `nvidia-smi`. */
  nvidiaSmiPath?: string;
  /** nvidia-smi timeout. Default 5000 ms. */
  nvidiaSmiTimeoutMs?: number;
  /** How long `stop()` lets in-flight streams finish before cutting them. Default 30 s. */
  drainTimeoutMs?: number;
  /** Largest prompt in bytes. Default 32768. */
  maxPromptBytes?: number;
  /** Largest max_tokens. Default 4096. */
  maxTokensLimit?: number;
  /** Expected token issuer until GetPublicKey says. Default `titancompute-coordinator`. */
  tokenIssuer?: string;
  /** Minimum time between key refetches on unknown key ids. Default 1000 ms. */
  keyRefetchIntervalMs?: number;
  /** Refuse session tokens without a `prompt_sha256` claim (from a coordinator older than this agent). Default false. */
  requirePromptBinding?: boolean;
  /** Where logs go. Default: a new pino logger at `logLevel`. */
  logger?: Logger;
  /** Used when no `logger` is given. Default `info`. */
  logLevel?: (typeof LOG_LEVELS)[number];
  /** How a request's proto_version is checked. Default `strict`. */
  protoVersionPolicy?: ProtoVersionPolicy;
  /** Server TLS (mTLS with a CA). */
  tls?: ServerTlsOptions;
  /** TLS of outgoing calls (coordinator, instance manager). */
  clientTls?: ClientTlsOptions;
}

const D = AGENT_DEFAULTS;

/**
 * Validates the options of `startAgent` and fills in their defaults. Fields it does not list
 * (engine settings, TLS, logger, token-verifier tuning) pass through unchecked.
 */
export const startAgentOptionsSchema = z
  .object({
    agentId: z
      .string()
      .regex(/^[A-Za-z0-9._:-]{1,128}$/, 'agentId must be 1-128 characters of [A-Za-z0-9._:-]')
      .optional(),
    host: z.string().min(1).default(D.host),
    port: z.number().int().min(0).max(65535).default(D.port),
    publicHost: z.string().min(1).optional(),
    httpPort: z.number().int().min(0).max(65535).optional(),
    metricsPort: z.number().int().min(0).max(65535).optional(),
    httpEndpoint: z
      .string()
      .regex(/^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+):\d{1,5}$/, 'httpEndpoint must be host:port (no scheme, no path)')
      .optional(),
    coordinator: z.string().min(1).default(D.coordinator),
    joinToken: z.string().min(1, 'joinToken is required'),
    // Not validated here: createEngine names the bad engine (and an Engine object is the caller's).
    engine: z.custom<EngineName | Engine>().default(D.engine),
    maxConcurrentJobs: z.number().int().min(1).max(1024).default(D.maxConcurrentJobs),
    maxQueue: z.number().int().min(0).max(100_000).optional(),
    heartbeatIntervalMs: z.number().int().min(50).default(D.heartbeatIntervalMs),
    drainTimeoutMs: z.number().int().min(0).default(D.drainTimeoutMs),
    maxPromptBytes: z.number().int().min(1).default(D.maxPromptBytes),
    maxTokensLimit: z.number().int().min(1).default(D.maxTokensLimit),
    imHealthIntervalMs: z.number().int().min(50).default(D.imHealthIntervalMs),
    protoVersionPolicy: z.custom<ProtoVersionPolicy>().default(D.protoVersionPolicy),
    logLevel: z.custom<(typeof LOG_LEVELS)[number]>().default(D.logLevel),
  })
  .transform((o) => ({ ...o, maxQueue: o.maxQueue ?? D.queuedJobsPerSlot * o.maxConcurrentJobs, httpPort: o.httpPort ?? defaultHttpPort(o.port) }))
  // The HTTP routes' own port (when not 0) serves /metrics itself: no second listener.
  .transform((o) => ({ ...o, metricsPort: o.metricsPort === o.httpPort && o.httpPort !== 0 ? undefined : o.metricsPort }));

/** The HTTP port an agent takes when none is given: `port` + {@link AGENT_DEFAULTS}.httpPortOffset, or 0 (any free port) for port 0. */
export function defaultHttpPort(port: number): number {
  const http = port + D.httpPortOffset;
  return port === 0 || http > 65535 ? 0 : http;
}

/** An optional port flag: unset means "derive it" (see {@link defaultHttpPort}). */
function optionalPortOption(base: Omit<OptionSpec, 'schema' | 'expected'>): OptionSpec<number | undefined> {
  return {
    ...base,
    expected: 'an integer from 0 to 65535',
    schema: z.string().trim().regex(/^\d+$/).transform(Number).pipe(z.number().int().max(65535)).optional() as unknown as z.ZodType<
      number | undefined,
      string | undefined
    >,
  };
}

/** `startAgent`'s options with every default applied. */
export type ResolvedAgentOptions = Omit<StartAgentOptions, keyof z.output<typeof startAgentOptionsSchema>> & z.output<typeof startAgentOptionsSchema>;

/** Every option of `titan-agent` (flags, environment variables, defaults): the common service options plus the agent's own. */
export function agentConfigSpec() {
  return {
    ...commonOptions({ service: 'agent', port: D.port, portEnv: ['AGENT_PORT'] }),
    agentId: stringOption({
      flag: 'agent-id',
      env: ['TITAN_AGENT_ID', 'AGENT_ID'],
      description: 'Agent id (1-128 of [A-Za-z0-9._:-]). Default <hostname>-<port>.',
    }),
    publicHost: stringOption({
      flag: 'public-host',
      env: ['TITAN_PUBLIC_HOST', 'PUBLIC_HOST'],
      description:
        'Host clients dial (endpoint = host:port). Default: --host, or for 0.0.0.0 127.0.0.1 when the coordinator is on loopback, else the hostname.',
    }),
    httpPort: optionalPortOption({
      flag: 'http-port',
      env: ['TITAN_HTTP_PORT', 'AGENT_HTTP_PORT'],
      description: `HTTP port of the OpenAI-compatible /v1 routes (0 picks a free port). Default --port + ${D.httpPortOffset} (${D.port + D.httpPortOffset}), or 0 when --port is 0.`,
    }),
    metricsPort: optionalPortOption({
      flag: 'metrics-port',
      env: ['TITAN_METRICS_PORT', 'AGENT_METRICS_PORT'],
      description: 'Port of the Prometheus GET /metrics. Default: the --http-port server itself; another port (0 = a free one) starts a listener of its own.',
    }),
    httpEndpoint: stringOption({
      flag: 'http-endpoint',
      env: ['TITAN_HTTP_ENDPOINT'],
      description: 'host:port advertised for the HTTP routes (the coordinator relays or redirects OpenAI requests there). Default --public-host:--http-port.',
    }),
    coordinator: requiredStringOption({
      flag: 'coordinator',
      env: ['TITAN_COORDINATOR', 'COORDINATOR_ENDPOINT'],
      default: D.coordinator,
      description:
        'Coordinator host:port; several comma-separated (replicas: one is home, the agent fails over to the next), or a name that resolves to several addresses.',
    }),
    joinToken: stringOption({ flag: 'join-token', env: ['TITAN_JOIN_TOKEN'], description: 'Join token the coordinator requires to register (required).' }),
    engine: enumOption({ flag: 'engine', env: ['TITAN_ENGINE'], default: D.engine, description: 'Inference engine.' }, ENGINE_NAMES),
    model: stringOption({ flag: 'model', env: ['TITAN_MODEL'], description: 'GGUF file for llama-cpp. Default: the bundled llama-2-tiny-random.gguf.' }),
    modelName: stringOption({
      flag: 'model-name',
      env: ['TITAN_MODEL_NAME'],
      description: "Name the llama-cpp model is served under. Default: the file's basename without .gguf.",
    }),
    supportedModels: listOption({
      flag: 'supported-models',
      env: ['TITAN_SUPPORTED_MODELS', 'SUPPORTED_MODELS'],
      description: 'Comma-separated model names to serve/advertise (overrides what the engine lists).',
    }),
    preloadModels: listOption({ flag: 'preload-models', env: ['TITAN_PRELOAD_MODELS', 'PRELOAD_MODELS'], description: 'Ollama models to pull at start.' }),
    ollamaHost: requiredStringOption({
      flag: 'ollama-host',
      env: ['TITAN_OLLAMA_HOST', 'OLLAMA_HOST'],
      default: D.ollamaHost,
      description: 'Ollama URL (engine ollama).',
    }),
    openaiUrl: stringOption({
      flag: 'openai-url',
      env: ['TITAN_OPENAI_URL'],
      description: 'OpenAI-compatible server URL (engine openai), e.g. http://localhost:8000.',
    }),
    openaiApiKey: stringOption({ flag: 'openai-api-key', env: ['TITAN_OPENAI_API_KEY'], description: 'API key for the OpenAI-compatible server.' }),
    openaiApi: enumOption(
      {
        flag: 'openai-api',
        env: ['TITAN_OPENAI_API'],
        default: D.openaiApi,
        description: 'OpenAI endpoint: completions or chat (a request option "api" overrides).',
      },
      ['completions', 'chat'] as const,
    ),
    // Shown in seconds (60s, not 1m), as --help always has.
    engineTimeoutMs: durationOption({
      flag: 'engine-timeout',
      env: ['TITAN_ENGINE_TIMEOUT'],
      default: formatDuration(D.engineIdleTimeoutMs, 's'),
      description: 'HTTP engines: longest silence (headers or between chunks) before a deadline error.',
    }),
    maxConcurrentJobs: intOption(
      {
        flag: 'max-concurrent-jobs',
        env: ['TITAN_MAX_CONCURRENT_JOBS', 'MAX_CONCURRENT_JOBS'],
        default: String(D.maxConcurrentJobs),
        description: 'Jobs generating at once.',
      },
      1,
      1024,
    ),
    maxQueue: stringOption({
      flag: 'max-queue',
      env: ['TITAN_MAX_QUEUE'],
      description: `Jobs waiting beyond that before RESOURCE_EXHAUSTED. Default ${D.queuedJobsPerSlot} × max concurrent jobs.`,
    }),
    heartbeatIntervalMs: durationOption(
      {
        flag: 'heartbeat-interval',
        env: ['TITAN_HEARTBEAT_INTERVAL', 'HEARTBEAT_INTERVAL'],
        default: formatDuration(D.heartbeatIntervalMs),
        description: "Health update interval (the coordinator's answer wins).",
      },
      50,
    ),
    instanceManager: stringOption({ flag: 'instance-manager', env: ['TITAN_INSTANCE_MANAGER'], description: 'Instance manager host:port; enables that link.' }),
    imHealthIntervalMs: durationOption(
      {
        flag: 'im-health-interval',
        env: ['TITAN_IM_HEALTH_INTERVAL'],
        default: formatDuration(D.imHealthIntervalMs),
        description: 'Instance manager health check and metrics interval.',
      },
      50,
    ),
    threads: intOption(
      {
        flag: 'threads',
        env: ['TITAN_THREADS'],
        default: String(defaultLlamaThreads()),
        description: 'llama.cpp CPU threads (default: every core but one, which runs the event loop).',
      },
      1,
      1024,
    ),
    contextSize: intOption(
      {
        flag: 'context-size',
        env: ['TITAN_CONTEXT_SIZE'],
        default: '0',
        description:
          'llama.cpp context per sequence (one sequence per --max-concurrent-jobs), in tokens: the longest prompt plus max_tokens a sequence holds, and the longest prefix it keeps warm. 0: min(2048, the model training context).',
      },
      0,
      1_048_576,
    ),
    nvidiaSmi: requiredStringOption({ flag: 'nvidia-smi', env: ['TITAN_NVIDIA_SMI'], default: D.nvidiaSmiPath, description: 'nvidia-smi binary.' }),
    drainTimeoutMs: durationOption(
      {
        flag: 'drain-timeout',
        env: ['TITAN_DRAIN_TIMEOUT'],
        default: formatDuration(D.drainTimeoutMs),
        description: 'On SIGTERM: how long in-flight streams may finish.',
      },
      0,
    ),
    maxPromptBytes: intOption(
      { flag: 'max-prompt-bytes', env: ['TITAN_MAX_PROMPT_BYTES'], default: String(D.maxPromptBytes), description: 'Largest prompt, bytes.' },
      1,
      16 * 1024 * 1024,
    ),
    maxTokensLimit: intOption(
      { flag: 'max-tokens-limit', env: ['TITAN_MAX_TOKENS_LIMIT'], default: String(D.maxTokensLimit), description: 'Largest max_tokens.' },
      1,
      1_000_000,
    ),
  };
}

/** `titan-agent`'s parsed config. */
export type AgentConfig = ConfigOf<ReturnType<typeof agentConfigSpec>>;

/** An optional field, present only when the value is. */
const when = <K extends string, V>(key: K, value: V | undefined | false | ''): { [P in K]?: V } =>
  (value === undefined || value === false || value === '' ? {} : { [key]: value }) as { [P in K]?: V };

/**
 * `startAgent`'s options (all but the logger) from `titan-agent`'s config, after the checks
 * that span several flags. Throws {@link ConfigError} naming the flag: the openai engine
 * without `--openai-url`, a `--model` that is not a file, no `--join-token`, a bad `--max-queue`.
 */
export function agentOptionsFromConfig(config: AgentConfig): Omit<StartAgentOptions, 'logger'> {
  if (config.engine === 'openai' && !config.openaiUrl) {
    throw new ConfigError('invalid --openai-url (TITAN_OPENAI_URL): the openai engine needs the server URL, e.g. http://localhost:8000, got nothing', {
      option: 'openai-url',
      source: '--openai-url',
      expected: 'an http(s) URL',
    });
  }
  if (config.engine === 'llama-cpp' && config.model !== undefined && !statSync(config.model, { throwIfNoEntry: false })?.isFile()) {
    throw new ConfigError(`invalid --model (TITAN_MODEL): expected a GGUF file, got ${JSON.stringify(config.model)} (no such file)`, {
      option: 'model',
      source: '--model',
      expected: 'a GGUF file',
      got: config.model,
    });
  }
  if (!config.joinToken) {
    throw new ConfigError('invalid --join-token (TITAN_JOIN_TOKEN): expected the coordinator join token, got nothing', {
      option: 'join-token',
      source: '--join-token',
      expected: 'a non-empty string',
    });
  }
  try {
    parseCoordinatorAddresses(config.coordinator);
  } catch (err) {
    throw new ConfigError(
      `invalid --coordinator (TITAN_COORDINATOR): expected host:port, or several comma-separated, got ${JSON.stringify(config.coordinator)}`,
      { option: 'coordinator', source: '--coordinator', expected: 'host:port[,host:port…]', got: config.coordinator },
      { cause: err },
    );
  }
  let maxQueue: number | undefined;
  if (config.maxQueue !== undefined) {
    maxQueue = Number(config.maxQueue);
    if (!/^\d+$/.test(config.maxQueue) || maxQueue > 100_000) {
      throw new ConfigError(`invalid --max-queue (TITAN_MAX_QUEUE): expected an integer from 0 to 100000, got ${JSON.stringify(config.maxQueue)}`, {
        option: 'max-queue',
        source: '--max-queue',
        expected: 'an integer from 0 to 100000',
        got: config.maxQueue,
      });
    }
  }
  const tls = serverTlsFromConfig(config);
  const clientTls = clientTlsFromConfig(config);
  return {
    ...when('agentId', config.agentId),
    host: config.host,
    port: config.port,
    ...when('publicHost', config.publicHost),
    ...when('httpPort', config.httpPort),
    ...when('httpEndpoint', config.httpEndpoint),
    ...when('metricsPort', config.metricsPort),
    coordinator: config.coordinator,
    joinToken: config.joinToken,
    dataDir: config.dataDir,
    engine: config.engine,
    ...when('modelPath', config.model),
    ...when('modelName', config.modelName),
    ...when('supportedModels', config.supportedModels.length > 0 && config.supportedModels),
    ...when('preloadModels', config.preloadModels.length > 0 && config.preloadModels),
    ollamaHost: config.ollamaHost,
    ...when('openaiUrl', config.openaiUrl),
    ...when('openaiApiKey', config.openaiApiKey),
    openaiApi: config.openaiApi,
    engineIdleTimeoutMs: config.engineTimeoutMs,
    maxConcurrentJobs: config.maxConcurrentJobs,
    ...when('maxQueue', maxQueue),
    heartbeatIntervalMs: config.heartbeatIntervalMs,
    ...when('instanceManager', config.instanceManager),
    imHealthIntervalMs: config.imHealthIntervalMs,
    threads: config.threads,
    ...when('contextSize', config.contextSize > 0 && config.contextSize),
    nvidiaSmiPath: config.nvidiaSmi,
    drainTimeoutMs: config.drainTimeoutMs,
    maxPromptBytes: config.maxPromptBytes,
    maxTokensLimit: config.maxTokensLimit,
    protoVersionPolicy: config.protoVersionPolicy,
    ...when('tls', tls),
    ...when('clientTls', clientTls),
  };
}

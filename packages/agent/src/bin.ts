#!/usr/bin/env node
import { statSync } from 'node:fs';
import {
  clientTlsFromConfig,
  commonOptions,
  ConfigError,
  createLogger,
  durationOption,
  enumOption,
  intOption,
  listOption,
  loadConfig,
  onShutdownSignal,
  readPackageVersion,
  runMain,
  serverTlsFromConfig,
  stringOption,
} from '@titancompute/server-kit';
import { startAgent } from './agent.js';
import { AgentConfigError } from './errors.js';
import { ENGINE_NAMES } from './engines/engine.js';
import { defaultLlamaThreads } from './engines/llama-cpp-engine.js';

const spec = {
  ...commonOptions({ service: 'agent', port: 50052, portEnv: ['AGENT_PORT'] }),
  agentId: stringOption({ flag: 'agent-id', env: ['TITAN_AGENT_ID', 'AGENT_ID'], description: 'Agent id (1-128 of [A-Za-z0-9._:-]). Default <hostname>-<port>.' }),
  publicHost: stringOption({
    flag: 'public-host',
    env: ['TITAN_PUBLIC_HOST', 'PUBLIC_HOST'],
    description: 'Host clients dial (endpoint = host:port). Default: --host, or for 0.0.0.0 127.0.0.1 when the coordinator is on loopback, else the hostname.',
  }),
  coordinator: stringOption({ flag: 'coordinator', env: ['TITAN_COORDINATOR', 'COORDINATOR_ENDPOINT'], default: 'localhost:50051', description: 'Coordinator host:port.' }),
  joinToken: stringOption({ flag: 'join-token', env: ['TITAN_JOIN_TOKEN'], description: 'Join token the coordinator requires to register (required).' }),
  engine: enumOption({ flag: 'engine', env: ['TITAN_ENGINE'], default: 'llama-cpp', description: 'Inference engine.' }, ENGINE_NAMES),
  model: stringOption({ flag: 'model', env: ['TITAN_MODEL'], description: 'GGUF file for llama-cpp. Default: the bundled llama-2-tiny-random.gguf.' }),
  modelName: stringOption({ flag: 'model-name', env: ['TITAN_MODEL_NAME'], description: "Name the llama-cpp model is served under. Default: the file's basename without .gguf." }),
  supportedModels: listOption({ flag: 'supported-models', env: ['TITAN_SUPPORTED_MODELS', 'SUPPORTED_MODELS'], description: 'Comma-separated model names to serve/advertise (overrides what the engine lists).' }),
  preloadModels: listOption({ flag: 'preload-models', env: ['TITAN_PRELOAD_MODELS', 'PRELOAD_MODELS'], description: 'Ollama models to pull at start.' }),
  ollamaHost: stringOption({ flag: 'ollama-host', env: ['TITAN_OLLAMA_HOST', 'OLLAMA_HOST'], default: 'http://localhost:11434', description: 'Ollama URL (engine ollama).' }),
  openaiUrl: stringOption({ flag: 'openai-url', env: ['TITAN_OPENAI_URL'], description: 'OpenAI-compatible server URL (engine openai), e.g. http://localhost:8000.' }),
  openaiApiKey: stringOption({ flag: 'openai-api-key', env: ['TITAN_OPENAI_API_KEY'], description: 'API key for the OpenAI-compatible server.' }),
  openaiApi: enumOption({ flag: 'openai-api', env: ['TITAN_OPENAI_API'], default: 'completions', description: 'OpenAI endpoint: completions or chat (a request option "api" overrides).' }, ['completions', 'chat'] as const),
  engineTimeoutMs: durationOption({ flag: 'engine-timeout', env: ['TITAN_ENGINE_TIMEOUT'], default: '60s', description: 'HTTP engines: longest silence (headers or between chunks) before a deadline error.' }),
  maxConcurrentJobs: intOption({ flag: 'max-concurrent-jobs', env: ['TITAN_MAX_CONCURRENT_JOBS', 'MAX_CONCURRENT_JOBS'], default: '4', description: 'Jobs generating at once.' }, 1, 1024),
  maxQueue: stringOption({ flag: 'max-queue', env: ['TITAN_MAX_QUEUE'], description: 'Jobs waiting beyond that before RESOURCE_EXHAUSTED. Default 2 × max concurrent jobs.' }),
  heartbeatIntervalMs: durationOption({ flag: 'heartbeat-interval', env: ['TITAN_HEARTBEAT_INTERVAL', 'HEARTBEAT_INTERVAL'], default: '2s', description: "Health update interval (the coordinator's answer wins)." }, 50),
  instanceManager: stringOption({ flag: 'instance-manager', env: ['TITAN_INSTANCE_MANAGER'], description: 'Instance manager host:port; enables that link.' }),
  imHealthIntervalMs: durationOption({ flag: 'im-health-interval', env: ['TITAN_IM_HEALTH_INTERVAL'], default: '5s', description: 'Instance manager health check and metrics interval.' }, 50),
  threads: intOption({ flag: 'threads', env: ['TITAN_THREADS'], default: String(defaultLlamaThreads()), description: 'llama.cpp CPU threads (default: every core but one, which runs the event loop).' }, 1, 1024),
  nvidiaSmi: stringOption({ flag: 'nvidia-smi', env: ['TITAN_NVIDIA_SMI'], default: 'nvidia-smi', description: 'nvidia-smi binary.' }),
  drainTimeoutMs: durationOption({ flag: 'drain-timeout', env: ['TITAN_DRAIN_TIMEOUT'], default: '30s', description: 'On SIGTERM: how long in-flight streams may finish.' }, 0),
  maxPromptBytes: intOption({ flag: 'max-prompt-bytes', env: ['TITAN_MAX_PROMPT_BYTES'], default: '32768', description: 'Largest prompt, bytes.' }, 1, 16 * 1024 * 1024),
  maxTokensLimit: intOption({ flag: 'max-tokens-limit', env: ['TITAN_MAX_TOKENS_LIMIT'], default: '4096', description: 'Largest max_tokens.' }, 1, 1_000_000),
};

runMain(async () => {
  const config = loadConfig(spec, {
    name: 'titan-agent',
    summary: 'TitanCompute agent: verifies session tokens and streams tokens from an inference engine; registers with the coordinator.',
    version: readPackageVersion(import.meta.url),
  });
  if (config.engine === 'openai' && !config.openaiUrl) {
    throw new ConfigError('invalid --openai-url (TITAN_OPENAI_URL): the openai engine needs the server URL, e.g. http://localhost:8000, got nothing', { option: 'openai-url', source: '--openai-url', expected: 'an http(s) URL' });
  }
  if (config.engine === 'llama-cpp' && config.model !== undefined && !statSync(config.model, { throwIfNoEntry: false })?.isFile()) {
    throw new ConfigError(`invalid --model (TITAN_MODEL): expected a GGUF file, got ${JSON.stringify(config.model)} (no such file)`, { option: 'model', source: '--model', expected: 'a GGUF file', got: config.model });
  }
  if (!config.joinToken) {
    throw new ConfigError('invalid --join-token (TITAN_JOIN_TOKEN): expected the coordinator join token, got nothing', { option: 'join-token', source: '--join-token', expected: 'a non-empty string' });
  }
  let maxQueue: number | undefined;
  if (config.maxQueue !== undefined) {
    maxQueue = Number(config.maxQueue);
    if (!/^\d+$/.test(config.maxQueue) || maxQueue > 100_000) {
        throw new ConfigError(`invalid --max-queue (TITAN_MAX_QUEUE): expected an integer from 0 to 100000, got ${JSON.stringify(config.maxQueue)}`, { option: 'max-queue', source: '--max-queue', expected: 'an integer from 0 to 100000', got: config.maxQueue });
    }
  }
  const logger = createLogger({ service: 'titan-agent', level: config.logLevel, format: config.logFormat });
  const tls = serverTlsFromConfig(config);
  const clientTls = clientTlsFromConfig(config);
  const agent = await startAgent({
    ...(config.agentId ? { agentId: config.agentId } : {}),
    host: config.host,
    port: config.port,
    ...(config.publicHost ? { publicHost: config.publicHost } : {}),
    coordinator: config.coordinator ?? 'localhost:50051',
    joinToken: config.joinToken,
    dataDir: config.dataDir,
    engine: config.engine,
    ...(config.model ? { modelPath: config.model } : {}),
    ...(config.modelName ? { modelName: config.modelName } : {}),
    ...(config.supportedModels.length ? { supportedModels: config.supportedModels } : {}),
    ...(config.preloadModels.length ? { preloadModels: config.preloadModels } : {}),
    ...(config.ollamaHost ? { ollamaHost: config.ollamaHost } : {}),
    ...(config.openaiUrl ? { openaiUrl: config.openaiUrl } : {}),
    ...(config.openaiApiKey ? { openaiApiKey: config.openaiApiKey } : {}),
    openaiApi: config.openaiApi,
    engineIdleTimeoutMs: config.engineTimeoutMs,
    maxConcurrentJobs: config.maxConcurrentJobs,
    ...(maxQueue !== undefined ? { maxQueue } : {}),
    heartbeatIntervalMs: config.heartbeatIntervalMs,
    ...(config.instanceManager ? { instanceManager: config.instanceManager } : {}),
    imHealthIntervalMs: config.imHealthIntervalMs,
    threads: config.threads,
    ...(config.nvidiaSmi ? { nvidiaSmiPath: config.nvidiaSmi } : {}),
    drainTimeoutMs: config.drainTimeoutMs,
    maxPromptBytes: config.maxPromptBytes,
    maxTokensLimit: config.maxTokensLimit,
    logger,
    protoVersionPolicy: config.protoVersionPolicy,
    ...(tls ? { tls } : {}),
    ...(clientTls ? { clientTls } : {}),
  }).catch((err: unknown) => {
    // A bad option combination the engine or agent found: a flag error (exit 2, one line), not a crash.
    if (err instanceof AgentConfigError) {
      const option = typeof err.context.option === 'string' ? err.context.option : 'options';
      throw new ConfigError(err.message, { option, source: 'command line', expected: 'a valid agent configuration' }, { cause: err });
    }
    throw err;
  });
  onShutdownSignal((signal) => agent.stop(signal));
  const reason = await agent.closed;
  logger.info({ reason }, 'exiting');
  process.exit(0);
}, 'titan-agent');

/**
 * `@titancompute/agent`: the TitanCompute agent. It runs an inference engine (embedded
 * llama.cpp by default, or Ollama, or any OpenAI-compatible server), verifies the
 * coordinator's session tokens and streams tokens straight to clients over gRPC
 * (AgentService) and over HTTP (the OpenAI-compatible `/v1/*` routes), while reporting its health to the coordinator and, optionally, to the
 * instance manager.
 *
 * @example
 * ```ts
 * import { startAgent } from '@titancompute/agent';
 *
 * const agent = await startAgent({
 *   port: 0,                         // any free port
 *   coordinator: '127.0.0.1:50051',
 *   joinToken: process.env.TITAN_JOIN_TOKEN!,
 *   engine: 'llama-cpp',             // serves the bundled llama-2-tiny-random model
 *   maxConcurrentJobs: 4,
 * });
 * console.log(`serving ${agent.agentId} at ${agent.endpoint}`);
 * process.on('SIGTERM', () => void agent.stop('SIGTERM'));
 * ```
 *
 * @packageDocumentation
 */
export { startAgent, type RunningAgent, type StartAgentOptions } from './agent.js';
export {
  CHAT_ROLES,
  ENGINE_NAMES,
  type ChatRole,
  type Engine,
  type EngineChatMessage,
  type EngineChunk,
  type EngineName,
  type GenerateRequest,
} from './engines/engine.js';
export { createEngine, type EngineSettings } from './engines/create-engine.js';
export {
  chatHistoryOf,
  createLlamaCppEngine,
  defaultLlamaThreads,
  modelNameFromPath,
  type LlamaCppEngine,
  type LlamaCppEngineOptions,
} from './engines/llama-cpp-engine.js';
export { createOllamaEngine, type OllamaEngineOptions } from './engines/ollama-engine.js';
export { createOpenAiEngine, type OpenAiApi, type OpenAiEngineOptions } from './engines/openai-engine.js';
export { DEFAULT_MODEL_PATH } from './engines/default-model.js';
export { parseGenerationParameters, KNOWN_PARAMETERS, type GenerationParameters } from './engines/parameters.js';
export { runGeneration, type FinishReason, type GenerationPiece, type GenerationStats } from './engines/run-generation.js';
export type { HttpTimeouts } from './engines/http-stream.js';
export {
  createTokenVerifier,
  DEFAULT_ISSUER,
  promptSha256,
  type RequestBinding,
  type SessionGrant,
  type TokenVerifier,
  type TokenVerifierOptions,
} from './tokens/token-verifier.js';
export {
  createReplayCache,
  openPersistentReplayCache,
  REPLAY_DB_FILE,
  type ClaimOutcome,
  type PersistentReplayCacheOptions,
  type ReplayCache,
  type ReplayCacheOptions,
} from './tokens/replay-cache.js';
export { createJobSlots, type JobSlots, type ReleaseSlot } from './capacity/job-slots.js';
export {
  createJobRunner,
  type AgentState,
  type EmbeddingsJobRequest,
  type EmbeddingsJobResult,
  type GenerationJob,
  type GenerationJobRequest,
  type JobRunner,
  type JobRunnerDeps,
  type RequestLimits,
} from './service/job-runner.js';
export { createJobTracker, type JobChange, type JobTotals, type JobTracker } from './service/job-tracker.js';
export {
  createAgentHttpServer,
  DEFAULT_AGENT_HTTP_HEADERS_TIMEOUT_MS,
  DEFAULT_AGENT_HTTP_REQUEST_TIMEOUT_MS,
  SESSION_TOKEN_QUERY_PARAMETER,
  type AgentHttpServerOptions,
} from './http/http-server.js';
export { OPENAI_ERROR_BY_GRPC_STATUS } from './http/openai-errors.js';
export { NVIDIA_SMI_ARGS, NVIDIA_SMI_QUERY, parseNvidiaSmi, queryNvidiaSmi, type NvidiaSmiOptions } from './stats/nvidia-smi.js';
export { createStatsSampler, type MachineStats, type StatsSampler } from './stats/system-stats.js';
export {
  AgentConfigError,
  AgentError,
  CapacityError,
  EngineError,
  GpuStatsError,
  ReplayStoreError,
  RequestValidationError,
  TokenError,
  type EngineErrorCode,
} from './errors.js';

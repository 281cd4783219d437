/**
 * `@titancompute/protocol`: the TitanCompute wire contract for TypeScript.
 *
 * - Generated nice-grpc stubs: the `titancompute.v1` contract (CoordinatorService, AgentService)
 *   at the top level, `instanceManager` (instance_manager.v1) and `stats` (stats.v1) as namespaces.
 * - `PROTO_VERSION` / `COMPATIBLE_PROTO_VERSIONS` and the client and server middlewares that
 *   carry and check them.
 * - `createTitanChannel` for plaintext, TLS and mTLS channels.
 * - The OpenAI-compatible contract (`parseChatCompletionRequest`, `chatCompletionChunk`, `openAiError`, …)
 *   shared by the coordinator's and the agents' `/v1/*` routes.
 * - The session-token contract (claims schema, issuer, audience rule, algorithm, `promptSha256`, `messagesSha256`)
 *   shared by the coordinator's signer and the agent's verifier.
 * - W3C trace context in gRPC metadata (`injectTraceContext`, `extractTraceContext`) and the span
 *   attribute names (`TRACE_ATTRIBUTES`) shared by the client SDK and the services.
 *
 * @example
 * ```ts
 * import { createClientFactory } from 'nice-grpc';
 * import {
 *   CoordinatorServiceDefinition,
 *   createProtoVersionClientMiddleware,
 *   createTitanChannel,
 * } from '@titancompute/protocol';
 *
 * const channel = createTitanChannel('127.0.0.1:50051');
 * const coordinator = createClientFactory()
 *   .use(createProtoVersionClientMiddleware())
 *   .create(CoordinatorServiceDefinition, channel);
 * const status = await coordinator.querySystemStatus({ includeAgents: true });
 * ```
 *
 * @packageDocumentation
 */
export * from './gen/titancompute/v1/titancompute.js';
export * as instanceManager from './gen/instance_manager/v1/instance_manager.js';
export * as stats from './gen/stats/v1/stats.js';
export { DESCRIPTOR_SET_BASE64 } from './gen/descriptor-set.js';
export {
  type GenerationParameters,
  type GenerationParametersResult,
  KNOWN_GENERATION_PARAMETERS,
  parseGenerationParameterMap,
} from './generation-parameters.js';
export {
  areProtoVersionsCompatible,
  COMPATIBLE_PROTO_VERSIONS,
  PROTO_COMPATIBLE_METADATA_KEY,
  PROTO_VERSION,
  PROTO_VERSION_METADATA_KEY,
} from './proto-version.js';
export {
  createProtoVersionClientMiddleware,
  type ProtoVersionClientOptions,
} from './middleware/proto-version-client.js';
export {
  createProtoVersionCheck,
  createProtoVersionServerMiddleware,
  isProtoVersionExempt,
  PROTO_VERSION_POLICIES,
  type ProtoVersionCheck,
  type ProtoVersionPolicy,
  type ProtoVersionServerOptions,
} from './middleware/proto-version-server.js';
export {
  createClientCredentials,
  createTitanChannel,
  readPemFile,
  type ClientTlsOptions,
  type TitanChannelOptions,
} from './channel.js';
export { isBrandedInstance, OpenAiRequestError, ProtocolError, TlsConfigError } from './errors.js';
export {
  canonicalMessagesJson,
  messagesSha256,
  parametersMismatch,
  promptSha256,
  SESSION_TOKEN_ALGORITHM,
  SESSION_TOKEN_CLAIMS,
  SESSION_TOKEN_ISSUER,
  SESSION_TOKEN_MAX_CLOCK_TOLERANCE_SEC,
  SESSION_TOKEN_REQUIRED_CLAIMS,
  SESSION_TOKEN_TYPE,
  readSessionTokenClaims,
  sessionTokenAudience,
  sessionTokenClaimsSchema,
  sessionTokenPayload,
  type SessionTokenChatMessage,
  type SessionTokenClaims,
  type SessionTokenGrant,
} from './session-token.js';

export {
  embeddingsGrantInput,
  OPENAI_DEFAULT_TEMPERATURE,
  OPENAI_EMBEDDINGS_TASK,
  OPENAI_MAX_EMBEDDING_INPUTS,
  OPENAI_MAX_STOP_SEQUENCES,
  OPENAI_TASK_PARAMETER,
  parseChatCompletionRequest,
  parseCompletionRequest,
  parseEmbeddingsRequest,
  type OpenAiChatMessage,
  type OpenAiEmbeddingsRequest,
  type OpenAiGenerationRequest,
} from './openai/openai-request.js';
export {
  chatCompletion,
  chatCompletionChunk,
  completion,
  completionChunk,
  embeddingsResponse,
  modelList,
  OPENAI_ERROR_TYPES,
  OPENAI_ID_PREFIX,
  OPENAI_SSE_DONE,
  OPENAI_SSE_HEADERS,
  openAiError,
  openAiResponseId,
  openAiUsage,
  sseEvent,
  usageChunk,
  type OpenAiErrorBody,
  type OpenAiFinishReason,
  type OpenAiModel,
  type OpenAiResponseIdentity,
  type OpenAiUsage,
} from './openai/openai-response.js';

export {
  MAX_REPORTED_PREFIX_BLOCKS,
  PREFIX_BLOCK_CHARS,
  PREFIX_BLOCK_HASH_PATTERN,
  PREFIX_MAX_BLOCKS,
  prefixBlockHashes,
  prefixText,
  type PrefixBlockOptions,
} from './prefix-blocks.js';

export {
  extractTraceContext,
  httpHeadersGetter,
  injectTraceContext,
  metadataGetter,
  metadataSetter,
  TRACE_ATTRIBUTES,
  TRACER_NAME,
  traceHeaders,
} from './trace-context.js';

/** Fully qualified names of every service in the contract (for health and reflection). */
export const SERVICE_NAMES = {
  coordinator: 'titancompute.v1.CoordinatorService',
  agent: 'titancompute.v1.AgentService',
  admin: 'titancompute.v1.AdminService',
  try: 'instance_manager.v1.TryService',
  subscribe: 'instance_manager.v1.SubscribeService',
  post: 'instance_manager.v1.PostService',
  get: 'instance_manager.v1.GetService',
  stats: 'stats.v1.StatsService',
} as const;

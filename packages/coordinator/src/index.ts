/**
 * `@titancompute/coordinator`: the TitanCompute coordinator. It keeps the agent registry
 * (join-token registration, one health stream per agent, eviction), schedules each request
 * onto the best agent (hard filters, weighted score, reservations, circuit breakers), and
 * signs short-lived EdDSA session tokens with a persisted, rotatable keyring. It serves
 * CoordinatorService over gRPC and v1's REST API plus /metrics over HTTP.
 *
 * @example
 * ```ts
 * import { startCoordinator } from '@titancompute/coordinator';
 *
 * const coordinator = await startCoordinator({ dataDir: '/tmp/titan', port: 0, httpPort: 0, logLevel: 'silent' });
 * // agents register with `authorization: Bearer ${coordinator.joinToken}`
 * console.log(`gRPC on ${coordinator.address}, REST on :${coordinator.httpPort}`);
 * await coordinator.stop();
 * ```
 *
 * @packageDocumentation
 */
export { startCoordinator, type RunningCoordinator } from './coordinator.js';
export {
  COORDINATOR_DEFAULTS,
  coordinatorConfigSpec,
  coordinatorOptionsFromConfig,
  resolveCoordinatorOptions,
  type CoordinatorConfig,
  type CoordinatorOptions,
  type ResolvedCoordinatorOptions,
} from './config.js';
export {
  AgentsBusyError,
  CoordinatorError,
  InvalidRequestError,
  JoinTokenError,
  KeyringError,
  NoAgentAvailableError,
  TokenSigningError,
} from './errors.js';
export { checkJoinToken, joinTokenPath, resolveJoinToken, type ResolvedJoinToken } from './join-token.js';
export { createCoordinatorMetrics, type CoordinatorMetricsSink, type DecisionOutcome } from './metrics.js';
export { AGENT_STATES, AgentRecord, type AgentState } from './registry/agent-record.js';
export { createAgentRegistry, type AgentRegistry, type AgentRegistryOptions, type HealthResult } from './registry/agent-registry.js';
export {
  CircuitBreaker,
  DEFAULT_BREAKER_OPTIONS,
  type BreakerState,
  type CircuitBreakerOptions,
  type ResolvedBreakerOptions,
} from './scheduler/circuit-breaker.js';
export {
  createScheduler,
  DEFAULT_WEIGHTS,
  freeMemoryMb,
  isCpuOnly,
  type SchedulableAgent,
  type ScheduleDecision,
  type Scheduler,
  type SchedulerOptions,
  type ScheduleRequest,
  type SchedulerWeights,
} from './scheduler/scheduler.js';
export { agentStatusOf, createCoordinatorService, formatUptime, type CoordinatorServiceOptions } from './service/coordinator-service.js';
export { createRequestRouter, type InferenceGrant, type RequestRouterOptions } from './service/request-router.js';
export {
  CHAT_ROLES,
  createRequestValidator,
  DEFAULT_MAX_TOKENS,
  MAX_CHAT_MESSAGES,
  DEFAULT_TEMPERATURE,
  REQUIRED_MEMORY_PARAMETER,
  type ChatMessageInput,
  type InferenceInput,
  type RequestLimits,
  type ValidatedInference,
} from './service/request-validation.js';
export { createHttpServer, type HttpServerOptions } from './http/http-server.js';
export { HTTP_ERROR_BY_GRPC_STATUS, type HttpErrorCode, type HttpErrorMapping } from './http/http-errors.js';
export {
  importPublicKey,
  keyringPath,
  openKeyring,
  rotateKeyring,
  TOKEN_ALGORITHM,
  type Keyring,
  type KeyringOptions,
  type PublishedKey,
  type SigningKey,
  type StoredKey,
} from './tokens/keyring.js';
export {
  DEFAULT_ISSUER,
  signSessionToken,
  type SessionClaims,
  type SessionGrant,
  type SignedSessionToken,
} from './tokens/session-token.js';

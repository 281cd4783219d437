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
  AdminAuthError,
  AgentsBusyError,
  AgentUnreachableError,
  ApiKeyAuthError,
  ApiKeyExistsError,
  ApiKeyNotFoundError,
  ApiKeyStoreError,
  CoordinatorError,
  InvalidRequestError,
  JoinTokenError,
  KeyringError,
  ModelNotAllowedError,
  NoAgentAvailableError,
  QuotaExceededError,
  TokenSigningError,
  type ApiKeyRefusal,
  type QuotaKind,
} from './errors.js';
export { checkJoinToken, joinTokenPath, resolveJoinToken, type ResolvedJoinToken } from './join-token.js';
export {
  API_KEY_SECRET_PREFIX,
  apiKeyState,
  generateApiKeySecret,
  hashApiKeySecret,
  type ApiKeyLimits,
  type ApiKeyRecord,
  type ApiKeyState,
  type NewApiKey,
} from './keys/api-key.js';
export { parseKeyLifetime, validateCreateApiKey, type CreateApiKeyInput, type ValidatedCreateApiKey } from './keys/api-key-input.js';
export type { ApiKeyStore } from './keys/api-key-store.js';
export {
  AUTH_SETTINGS,
  createApiKeys,
  type AdmissionRequest,
  type ApiKeys,
  type ApiKeysOptions,
  type AuthMode,
  type AuthSetting,
  type ChargeableOutcome,
  type CreatedApiKey,
  type KeyAdmission,
} from './keys/api-keys.js';
export { adminTokenPath, checkAdminToken, resolveAdminToken, type ResolvedAdminToken } from './keys/admin-token.js';
export { createAdminService, toApiKeyMessage, type AdminServiceOptions } from './keys/admin-service.js';
export { formatResetDuration, RATE_WINDOW_MS, SlidingWindow } from './keys/sliding-window.js';
export { API_KEYS_SCHEMA_VERSION, openSqliteApiKeyStore, type SqliteApiKeyStoreOptions } from './keys/sqlite-api-key-store.js';
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
  createPrefixAffinity,
  DEFAULT_MAX_PREFIX_BLOCKS_PER_AGENT,
  PREFIX_ROUTING_MODES,
  type PrefixAffinity,
  type PrefixAffinityOptions,
  type PrefixRoutingMode,
} from './scheduler/prefix-affinity.js';
export {
  createScheduler,
  DEFAULT_PREFIX_LOAD_CAP,
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
export { apiKeyJson, registerAdminRoutes, type AdminRoutesOptions } from './http/admin-routes.js';
export { createDashboard, DASHBOARD_API_PREFIX, type Dashboard, type DashboardOptions } from './dashboard/dashboard.js';
export {
  createTrafficRecorder,
  DEFAULT_TRAFFIC_WINDOW_SECONDS,
  recordTraffic,
  type TrafficRecorder,
  type TrafficRecorderOptions,
} from './dashboard/traffic-recorder.js';
export { createFleetTracker, fleetRow, type FleetTracker } from './dashboard/fleet-tracker.js';
export { createInstanceFeed, type InstanceFeed, type InstanceFeedOptions } from './dashboard/instance-feed.js';
export type * from './dashboard/dashboard-wire.js';
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

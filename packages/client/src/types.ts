import type { ClientTlsOptions } from '@titancompute/protocol';

/** TLS settings for every connection the SDK opens (coordinator, agents, instance manager). */
export type TlsOptions = ClientTlsOptions;

/** Options of `new TitanClient(...)`. */
export interface TitanClientOptions {
  /**
   * Coordinator gRPC address, `host:port`; or several (replicas of one cluster) as
   * `'a:50051,b:50051'` or an array: RequestInference and status go to the one that answered
   * last, and to the next one when it cannot be reached, answers UNAVAILABLE or its deadline
   * passes before connecting — only before the first token. Default `127.0.0.1:50051`.
   */
  coordinator?: string | readonly string[];
  /** TLS (or mTLS with certFile/keyFile) for the coordinator and the agents. Plaintext when absent. */
  tls?: TlsOptions;
  /** Identifies this client to the coordinator (the token's `sub`). Default `titan-client-<random>`. */
  clientId?: string;
  /**
   * API key (`tk-…`) sent to the coordinator as `authorization: Bearer …` on every
   * RequestInference (never to agents); with keys in force the coordinator uses the key's name as
   * the client id. Default: the `TITAN_API_KEY` environment variable; `''` sends none.
   */
  apiKey?: string;
  /** Attempts (coordinator pick + agent stream) before giving up, counting the first. Default 3. */
  maxAttempts?: number;
  /** Deadline of each unary call (RequestInference, QuerySystemStatus, GetStatus), ms. Default 10 000. */
  requestTimeoutMs?: number;
  /** Deadline of a whole token stream, ms. Default 300 000. */
  streamTimeoutMs?: number;
  /**
   * Busy answers retried per generation: RESOURCE_EXHAUSTED from the coordinator, or from the
   * agent before the first token (never after), each after the server's `retry-after-ms` hint
   * (250 ms when it gives none). Not counted in `maxAttempts`. 0 turns it off. Default 5.
   */
  busyRetries?: number;
  /** Most time one generation spends waiting between busy retries, ms; past it the `CapacityError` is thrown. Default 10 000. */
  busyRetryMaxWaitMs?: number;
}

/** Why a generation ended. */
export type FinishReason = 'stop' | 'length' | 'cancelled';

/** What `generate()` / `complete()` take. */
export interface GenerateRequest {
  /** Model name, e.g. `llama-2-tiny-random`. */
  model: string;
  prompt: string;
  /** 1 … the coordinator's limit (default 4096). Default 100. */
  maxTokens?: number;
  /** 0 … 2; 0 is greedy. Default 0.7. */
  temperature?: number;
  /** Engine parameters (top_p, top_k, seed, stop, repeat_penalty …), sent to the agent. */
  parameters?: Record<string, string | number | boolean>;
  /** Cancels both the coordinator call and the agent stream (the agent frees its slot). */
  signal?: AbortSignal;
  /** Overrides the client's `maxAttempts` for this request. */
  maxAttempts?: number;
}

/** Roles a chat message may have. */
export type ChatRole = 'system' | 'user' | 'assistant';

/** One turn of a chat conversation. */
export interface ChatMessage {
  role: ChatRole;
  content: string;
}

/**
 * What `chat()` takes: a {@link GenerateRequest} with `messages` instead of `prompt`. The
 * engine applies the model's own chat template to them.
 */
export interface ChatRequest extends Omit<GenerateRequest, 'prompt'> {
  /** The conversation, in order (at least one message). */
  messages: ChatMessage[];
}

/** Statistics of a finished generation. */
export interface GenerationStats {
  /** Tokens generated. */
  tokens: number;
  /** Time to first token measured by the agent, ms. */
  timeToFirstTokenMs: number;
  /** Time to first token seen by this client (scheduling + connection + generation), ms. */
  clientTimeToFirstTokenMs: number;
  tokensPerSecond: number;
  agentId: string;
  jobId: string;
  finishReason: FinishReason;
  /** Prompt tokens, when the agent reported them. */
  promptTokens: number;
  /** Attempts used (1 unless failover happened). */
  attempts: number;
  /** Effective limits the coordinator granted. */
  maxTokens: number;
  temperature: number;
}

/** A piece of generated text. */
export interface GenerationTextChunk {
  done: false;
  /** The text of this chunk (one token or a small group). */
  text: string;
  /** 0-based index of the chunk's first token. */
  index: number;
  /** When the agent produced it, unix ms. */
  createdAt: number;
}

/** The last item of a generation: no text, the stats. */
export interface GenerationDoneChunk {
  done: true;
  text: '';
  /** Index after the last token (= tokens generated). */
  index: number;
  createdAt: number;
  stats: GenerationStats;
}

/** One item of `generate()`'s async iterable; the last one has `done: true` and `stats`. */
export type GenerationChunk = GenerationTextChunk | GenerationDoneChunk;

/** What `complete()` returns. */
export interface Completion {
  text: string;
  stats: GenerationStats;
}

/** Agent health as the coordinator sees it. */
export type AgentState = 'healthy' | 'degraded' | 'half-open' | 'offline' | (string & {});

/** One GPU of an agent. */
export interface GpuStatus {
  index: number;
  uuid: string;
  name: string;
  memoryTotalMb: number;
  memoryUsedMb: number;
  memoryFreeMb: number;
  utilizationPercent?: number | undefined;
  temperatureC?: number | undefined;
  powerDrawW?: number | undefined;
}

/** One agent in {@link ClusterStatus}. */
export interface AgentSummary {
  id: string;
  state: AgentState;
  endpoint: string;
  totalVramMb: number;
  freeVramMb: number;
  totalRamMb: number;
  freeRamMb: number;
  runningJobs: number;
  queuedJobs: number;
  reservedJobs: number;
  maxJobs: number;
  rttMs: number;
  tokensPerSecond: number;
  cpuPercent: number;
  models: string[];
  /** 'closed', 'open' or 'half-open'. */
  breakerState: string;
  /** Unix ms of the last heartbeat. */
  lastHeartbeat: number;
  gpus: GpuStatus[];
}

/** Scheduler counters of the coordinator since it started. */
export interface CoordinatorCounters {
  requestsTotal: number;
  scheduledTotal: number;
  rejectedNoAgentTotal: number;
  rejectedBusyTotal: number;
  rejectedInvalidTotal: number;
  jobsCompletedTotal: number;
  jobsFailedTotal: number;
  reservedJobs: number;
  schedulingLatencyP50Ms: number;
  schedulingLatencyP99Ms: number;
}

/** What `client.status()` returns. */
export interface ClusterStatus {
  totalAgents: number;
  healthyAgents: number;
  totalJobs: number;
  /** Human-readable uptime of the coordinator, e.g. `1h2m3s`. */
  uptime: string;
  uptimeSeconds: number;
  agents: AgentSummary[];
  metrics?: CoordinatorCounters | undefined;
}

/** What `client.agentStatus(endpoint)` returns (the agent's own view). */
export interface AgentSelfStatus {
  agentId: string;
  /** 'healthy', 'draining' or 'starting'. */
  state: string;
  engine: string;
  modelLoaded: string;
  runningJobs: number;
  queuedJobs: number;
  maxJobs: number;
  activeSessions: number;
  activeJobIds: string[];
  totalRequestsProcessed: number;
  totalTokensGenerated: number;
  tokensPerSecond: number;
  freeVramMb: number;
  freeRamMb: number;
  gpus: GpuStatus[];
}

// ---- instance manager ---------------------------------------------------------------

/** Kind of instance (proto `InstanceType` without its prefix). */
export type InstanceType =
  | 'UNSPECIFIED'
  | 'CHROME_BROWSER'
  | 'WARMPOOL_CHROME_BROWSER'
  | 'WARMPOOL_PROXY'
  | 'INSTANCE_MANAGER'
  | 'VLLM'
  | 'BROWSER_BACKEND'
  | 'INFERENCE_AGENT'
  | 'COORDINATOR';

/** Kind of service an instance offers (proto `ServiceType` without its prefix). */
export type ServiceType = 'UNSPECIFIED' | 'CHROME_DEBUG_PORT' | 'VLLM_OPENAI_COMPATIBLE' | 'AGENT_GRPC' | 'COORDINATOR_GRPC' | 'COORDINATOR_HTTP';

/** Kind of instance event (proto `EventType` without its prefix). */
export type InstanceEventType = 'UNSPECIFIED' | 'ADDED' | 'REMOVED' | 'CHILD_ADDED' | 'PARENT_ADDED' | 'SERVICE_ADDED';

/** Why an instance died (proto `RemovalReason` without its prefix). */
export type RemovalReason = 'UNSPECIFIED' | 'KILLED' | 'STALE' | 'PARENT_DIED';

/** An instance as registered. */
export interface InstanceInfo {
  /** 1-128 characters of [A-Za-z0-9._:-]. */
  id: string;
  type: InstanceType;
  hostname: string;
  address: string;
  metadata: Record<string, string>;
}

/** A service an instance offers. */
export interface InstanceService {
  type: ServiceType;
  /** 1-65535, or 0 when `url` is set. */
  port: number;
  url: string;
}

/** The full, current view of a live instance. */
export interface InstanceDetails extends InstanceInfo {
  services: InstanceService[];
  /** Undefined when it has no parent. */
  parentId: string | undefined;
  childIds: string[];
  healthy: boolean;
  lastHealthCheckMs: number;
  createdAtMs: number;
}

/** An event of `InstanceManagerClient.watch()`. */
export interface InstanceEvent {
  sequence: number;
  type: InstanceEventType;
  instanceId: string;
  instanceType: InstanceType;
  /** CHILD_ADDED: the child; PARENT_ADDED: the parent. */
  relatedInstanceId: string | undefined;
  /** SERVICE_ADDED: the service. */
  service: InstanceService | undefined;
  /** ADDED: the instance. */
  instance: InstanceInfo | undefined;
  /** REMOVED: why. */
  removalReason: RemovalReason | undefined;
  timestampMs: number;
  /** True for the snapshot's ADDED events (with `includeSnapshot`). */
  snapshot: boolean;
}

/** A health check record. */
export interface HealthCheckRecord {
  instanceId: string;
  timestampMs: number;
  healthy: boolean;
}

/** Result of a Try* call: `success` false is control flow, not an error. */
export interface TryResult {
  success: boolean;
  message: string;
}

/** Proxy metrics of an instance. */
export interface ProxyMetrics {
  activeConnections: number;
  totalConnections: number;
  bytesSent: number;
  bytesReceived: number;
  timestampMs: number;
}

/** System metrics of an instance. */
export interface SystemMetrics {
  usedMemoryBytes: number;
  totalMemoryBytes: number;
  cpuPercent: number;
  timestampMs: number;
}

/** One GPU in {@link GpuMetrics}. */
export interface GpuDeviceMetrics {
  index: number;
  name: string;
  usedMemoryBytes: number;
  totalMemoryBytes: number;
  utilizationPercent: number;
}

/** GPU metrics of an instance (totals over all GPUs). */
export interface GpuMetrics {
  usedMemoryBytes: number;
  totalMemoryBytes: number;
  utilizationPercent: number;
  timestampMs: number;
  devices: GpuDeviceMetrics[];
}

/** LLM metrics of an instance. */
export interface LlmMetrics {
  requestCount: number;
  tokensReceived: number;
  tokensSent: number;
  timestampMs: number;
}

/** Filter of `listInstances()`. */
export interface ListInstancesFilter {
  type?: InstanceType;
  parentId?: string;
  serviceType?: ServiceType;
  healthyOnly?: boolean;
}

/** Options of `watch()`. */
export interface WatchOptions {
  instanceTypes?: InstanceType[];
  instanceIds?: string[];
  /** Resume after this sequence number (0 or absent: live events only). */
  fromSequence?: number;
  /** First send one ADDED event (snapshot: true) per live instance. */
  includeSnapshot?: boolean;
  /** Stops the watch (the iterator ends quietly). */
  signal?: AbortSignal;
  /** Resubscriptions after a dropped connection before giving up. Default Infinity. */
  maxReconnects?: number;
  /** Delay before the first resubscription, doubled each time up to 5 s. Default 100 ms. */
  reconnectDelayMs?: number;
  /** Called with each reconnection attempt (for logs). */
  onReconnect?: (info: { attempt: number; fromSequence: number; error: Error }) => void;
}

/** Options of `new InstanceManagerClient(...)`. */
export interface InstanceManagerClientOptions {
  /** Instance manager gRPC address, `host:port`. Default `127.0.0.1:50050`. */
  address?: string;
  tls?: TlsOptions;
  /** Deadline of each unary call, ms. Default 10 000. */
  requestTimeoutMs?: number;
}

/** Options of `new TitanAdminClient(...)`. */
export interface TitanAdminClientOptions {
  /** Coordinator gRPC address, `host:port`; or several, comma-separated or an array (tried in turn). Default `127.0.0.1:50051`. */
  coordinator?: string | readonly string[];
  /** The coordinator's admin token (its data dir's `admin-token` file, or its `--admin-token`). */
  adminToken: string;
  /** TLS (or mTLS) for the coordinator. Plaintext when absent. */
  tls?: TlsOptions;
  /** Deadline of each call, ms. Default 10 000. */
  requestTimeoutMs?: number;
}

/** A new API key's name and limits; a limit left out (or 0) is unlimited. */
export interface CreateApiKeyOptions {
  /** Unique among active keys; becomes the client id of the key's requests. */
  name: string;
  /** Requests granted per sliding minute. */
  requestsPerMinute?: number;
  /** Tokens (prompt + generated, as agents report them) per sliding minute. */
  tokensPerMinute?: number;
  /** Reservations plus running jobs at once. */
  maxConcurrent?: number;
  /** Tokens over the key's lifetime. */
  budgetTokens?: number;
  /** Models the key may use; empty or absent: every model. */
  models?: string[];
  /** Lifetime in seconds from now; absent or 0: never expires. */
  expiresInSeconds?: number;
}

/** Whether a key works now. */
export type ApiKeyState = 'active' | 'revoked' | 'expired';

/** An API key as the coordinator lists it (never its secret). Limits of 0 are unlimited. */
export interface ApiKeyInfo {
  id: string;
  name: string;
  /** The secret's first characters (`tk-ab12cd3`), to tell keys apart. */
  prefix: string;
  state: ApiKeyState;
  requestsPerMinute: number;
  tokensPerMinute: number;
  maxConcurrent: number;
  budgetTokens: number;
  /** Empty: every model. */
  models: string[];
  /** Unix ms. */
  createdAtMs: number;
  /** Unix ms; undefined: never expires. */
  expiresAtMs: number | undefined;
  /** Unix ms; undefined: not revoked. */
  revokedAtMs: number | undefined;
  /** Tokens charged so far. */
  tokensUsed: number;
  requestsTotal: number;
  /** Unix ms; undefined: never used. */
  lastUsedAtMs: number | undefined;
}

/** A new key: its description and its secret, which the coordinator shows only this once. */
export interface CreatedApiKey {
  key: ApiKeyInfo;
  /** `tk-…`. */
  secret: string;
}

import { randomUUID } from 'node:crypto';
import { Status } from 'nice-grpc-common';
import { AgentServiceDefinition, CoordinatorServiceDefinition, type AgentServiceClient, type CoordinatorServiceClient } from '@titancompute/protocol';
import { InvalidArgumentError, TitanError, type CallTarget } from './errors.js';
import { DEFAULT_BUSY_RETRIES, DEFAULT_BUSY_RETRY_MAX_WAIT_MS, runGeneration } from './inference/run-generation.js';
import { toAgentSelfStatus, toClusterStatus } from './inference/status-mapping.js';
import { validateChatRequest, validateGenerateRequest, type ValidatedRequest } from './inference/validate-request.js';
import { createChannelPool, type ChannelPool } from './transport/channel-pool.js';
import { createCoordinatorRotation, parseCoordinatorAddresses, type CoordinatorRotation } from './transport/coordinator-rotation.js';
import { callUnary, type UnaryCallOptions } from './transport/unary-call.js';
import type {
  AgentSelfStatus,
  ChatRequest,
  ClusterStatus,
  Completion,
  GenerateRequest,
  GenerationChunk,
  GenerationStats,
  TitanClientOptions,
} from './types.js';

/** Default coordinator address. */
export const DEFAULT_COORDINATOR = '127.0.0.1:50051';

function positiveInt(name: string, value: number | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  if (!Number.isInteger(value) || value < 1) throw new InvalidArgumentError(`${name}: must be an integer >= 1`, name);
  return value;
}

function nonNegativeInt(name: string, value: number | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  if (!Number.isInteger(value) || value < 0) throw new InvalidArgumentError(`${name}: must be an integer >= 0`, name);
  return value;
}

/**
 * A running generation: iterate it with `for await` for chunks (the last one has
 * `done: true` and `stats`), or call {@link Generation.abort}. It can be iterated once.
 */
export class Generation implements AsyncIterable<GenerationChunk> {
  readonly #controller = new AbortController();
  #started = false;
  readonly #start: (signal: AbortSignal, onStats: (stats: GenerationStats) => void) => AsyncGenerator<GenerationChunk, void, undefined>;
  #stats: GenerationStats | undefined;

  /** @internal Use {@link TitanClient.generate}. */
  constructor(
    start: (signal: AbortSignal, onStats: (stats: GenerationStats) => void) => AsyncGenerator<GenerationChunk, void, undefined>,
    signal?: AbortSignal,
  ) {
    this.#start = start;
    if (signal?.aborted) this.#controller.abort(signal.reason);
    else signal?.addEventListener('abort', () => this.#controller.abort(signal.reason), { once: true });
  }

  /** Stats of the finished generation (undefined until the `done` chunk was read). */
  get stats(): GenerationStats | undefined {
    return this.#stats;
  }

  /** Cancels the generation: the coordinator call or the agent stream (the agent frees its slot). */
  abort(reason?: unknown): void {
    this.#controller.abort(reason);
  }

  [Symbol.asyncIterator](): AsyncGenerator<GenerationChunk, void, undefined> {
    if (this.#started) throw new InvalidArgumentError('a Generation can be iterated only once', 'generation');
    this.#started = true;
    // Hand out the generation's own iterator (no extra re-yielding layer on the hot path).
    return this.#start(this.#controller.signal, (stats) => (this.#stats = stats));
  }
}

/** gRPC's connectivity state READY (grpc-js `connectivityState.READY`): the channel is connected. */
export const CHANNEL_READY = 2;

/**
 * The TitanCompute client: asks the coordinator for an agent, then streams tokens straight
 * from that agent ("zero-proxy"), with failover before the first token, deadlines, AbortSignal
 * and typed errors. Several coordinators (replicas of one cluster: `'a:50051,b:50051'` or an
 * array) are tried in turn, starting with the one that answered last. Channels are cached per
 * address; call {@link TitanClient.close} when done.
 *
 * @example
 * ```ts
 * const client = new TitanClient({ coordinator: '127.0.0.1:50051' }); // or 'c1:50051,c2:50051,c3:50051'
 * for await (const chunk of client.generate({ model: 'llama-2-tiny-random', prompt: 'Hello' })) {
 *   if (chunk.done) console.log('\n', chunk.stats);
 *   else process.stdout.write(chunk.text);
 * }
 * client.close();
 * ```
 */
export class TitanClient {
  /** Every coordinator address, in the order given. */
  readonly coordinatorAddresses: readonly string[];
  /** Client id sent to the coordinator. */
  readonly clientId: string;
  readonly #pool: ChannelPool;
  readonly #maxAttempts: number;
  readonly #requestTimeoutMs: number;
  readonly #streamTimeoutMs: number;
  readonly #busyRetries: number;
  readonly #busyRetryMaxWaitMs: number;
  readonly #apiKey: string | undefined;
  readonly #coordinators = new Map<string, CoordinatorServiceClient>();
  readonly #rotation: CoordinatorRotation;
  readonly #agents = new Map<string, AgentServiceClient>();

  constructor(options: TitanClientOptions = {}) {
    this.coordinatorAddresses = parseCoordinatorAddresses(options.coordinator ?? DEFAULT_COORDINATOR);
    this.#rotation = createCoordinatorRotation(
      this.coordinatorAddresses,
      (address) => this.#coordinators.has(address) && this.#pool.channel(address, 'coordinator').getConnectivityState(false) === CHANNEL_READY,
    );
    this.clientId = options.clientId ?? `titan-client-${randomUUID().slice(0, 8)}`;
    this.#maxAttempts = positiveInt('maxAttempts', options.maxAttempts, 3);
    this.#requestTimeoutMs = positiveInt('requestTimeoutMs', options.requestTimeoutMs, 10_000);
    this.#streamTimeoutMs = positiveInt('streamTimeoutMs', options.streamTimeoutMs, 300_000);
    this.#busyRetries = nonNegativeInt('busyRetries', options.busyRetries, DEFAULT_BUSY_RETRIES);
    this.#busyRetryMaxWaitMs = nonNegativeInt('busyRetryMaxWaitMs', options.busyRetryMaxWaitMs, DEFAULT_BUSY_RETRY_MAX_WAIT_MS);
    const apiKey = options.apiKey ?? process.env.TITAN_API_KEY ?? '';
    if (typeof apiKey !== 'string' || /\s/.test(apiKey)) throw new InvalidArgumentError('apiKey: must be a string without spaces (tk-…)', 'apiKey');
    this.#apiKey = apiKey || undefined;
    this.#pool = createChannelPool(options.tls);
  }

  /** Coordinator address in use: the one that answered last (the first one until any answered). */
  get coordinatorAddress(): string {
    return this.#rotation.current;
  }

  #coordinatorClient(address: string): CoordinatorServiceClient {
    let client = this.#coordinators.get(address);
    if (!client) {
      client = this.#pool.factory.create(CoordinatorServiceDefinition, this.#pool.channel(address, 'coordinator'));
      this.#coordinators.set(address, client);
    }
    return client;
  }

  #agentClient(endpoint: string): AgentServiceClient {
    let client = this.#agents.get(endpoint);
    if (!client) {
      client = this.#pool.factory.create(AgentServiceDefinition, this.#pool.channel(endpoint, 'agent'));
      this.#agents.set(endpoint, client);
    }
    return client;
  }

  /**
   * Generates text. Returns at once; the work starts when you iterate. Chunks carry `text`
   * and `index`; the last one has `done: true` and `stats`. Throws {@link InvalidArgumentError}
   * synchronously for a bad request; everything else surfaces from the iteration as a
   * {@link TitanError} subclass.
   */
  generate(request: GenerateRequest): Generation {
    return this.#start(validateGenerateRequest(request, this.#maxAttempts));
  }

  /**
   * Chats: like {@link TitanClient.generate}, with `messages` (system, user, assistant turns)
   * instead of a prompt; the engine applies the model's own chat template and generates the
   * assistant's reply. Throws {@link InvalidArgumentError} synchronously for a bad request
   * (naming e.g. `messages[1].role`).
   *
   * @example
   * ```ts
   * for await (const chunk of client.chat({ model: 'llama-2-tiny-random', messages: [{ role: 'user', content: 'Hi' }] })) {
   *   if (!chunk.done) process.stdout.write(chunk.text);
   * }
   * ```
   */
  chat(request: ChatRequest): Generation {
    return this.#start(validateChatRequest(request, this.#maxAttempts));
  }

  #start(validated: ValidatedRequest): Generation {
    const deps = {
      coordinators: this.#rotation,
      clientId: this.clientId,
      coordinator: (address: string) => this.#coordinatorClient(address),
      agent: (endpoint: string) => this.#agentClient(endpoint),
      requestTimeoutMs: this.#requestTimeoutMs,
      streamTimeoutMs: this.#streamTimeoutMs,
      busyRetries: this.#busyRetries,
      busyRetryMaxWaitMs: this.#busyRetryMaxWaitMs,
      apiKey: this.#apiKey,
    };
    return new Generation((signal, onStats) => runGeneration(deps, { ...validated, signal }, onStats), validated.signal);
  }

  /** Generates text and returns all of it with the stats. */
  async complete(request: GenerateRequest): Promise<Completion> {
    let text = '';
    for await (const chunk of this.generate(request)) {
      if (chunk.done) return { text, stats: chunk.stats };
      text += chunk.text;
    }
    /* c8 ignore next */
    throw new TitanError('generation ended without stats', Status.UNKNOWN);
  }

  /**
   * Cluster status from the coordinator: agents, their state, load and GPU memory, scheduler
   * counters. With several coordinators, from the first one that answers (see {@link TitanClient.coordinatorAddress}).
   */
  async status(options: { signal?: AbortSignal } = {}): Promise<ClusterStatus> {
    const status = await this.#rotation.call((address) =>
      this.#unary('coordinator', address, options.signal, (callOptions) =>
        this.#coordinatorClient(address).querySystemStatus({ includeAgents: true, includeMetrics: true }, callOptions),
      ),
    );
    return toClusterStatus(status);
  }

  /** An agent's own status (GetStatus), dialled directly at its `host:port` endpoint. */
  async agentStatus(endpoint: string, options: { signal?: AbortSignal } = {}): Promise<AgentSelfStatus> {
    const status = await this.#unary('agent', endpoint, options.signal, (callOptions) =>
      this.#agentClient(endpoint).getStatus({ agentId: '', includeJobs: true }, callOptions),
    );
    return toAgentSelfStatus(status);
  }

  #unary<T>(target: CallTarget, address: string, signal: AbortSignal | undefined, call: (options: UnaryCallOptions) => Promise<T>): Promise<T> {
    return callUnary({ target, address, timeoutMs: this.#requestTimeoutMs, signal }, call);
  }

  /** Closes every channel this client opened. The client can still be used (channels reopen). */
  close(): void {
    this.#coordinators.clear();
    this.#agents.clear();
    this.#pool.close();
  }
}

import { randomBytes } from 'node:crypto';
import { createClientFactory, Metadata, ServerError, Status, type Channel } from 'nice-grpc';
import { createLogger, createServiceServer, type ServiceServer } from '@titancompute/server-kit';
import {
  AgentServiceDefinition,
  CoordinatorServiceDefinition,
  createProtoVersionClientMiddleware,
  createTitanChannel,
  type CoordinatorServiceClient,
  type HealthAck,
  type HealthUpdate,
  type JobOutcome,
  type RegistrationResponse,
} from '@titancompute/protocol';

/** Options of {@link createFakeAgent}. */
export interface FakeAgentOptions {
  coordinatorAddress: string;
  joinToken: string;
  agentId: string;
  models?: string[];
  maxJobs?: number;
  totalVramMb?: number;
  totalRamMb?: number;
  freeVramMb?: number;
  freeRamMb?: number;
  rttMs?: number;
  /** Automatic heartbeat interval; 0 = only explicit `send()`. Default 0. */
  heartbeatIntervalMs?: number;
  /** The agent's credential (sent on RegisterAgent, each stream's first update, DeregisterAgent). Default: 32 random bytes, base64url. */
  credential?: string;
  /**
   * Serve a real AgentService (grpc health SERVING + GetStatus) on 127.0.0.1:0 so the
   * coordinator's endpoint check passes. Default true.
   */
  serve?: boolean;
  /** agent_id the served GetStatus answers with (an impostor endpoint). Default `agentId`. */
  servedAgentId?: string;
  /** Endpoint to register. Default: the served address (or an unused fake one without `serve`). */
  endpoint?: string;
}

/**
 * A fake agent speaking the real wire format: RegisterAgent with the join token, one
 * ReportHealth stream carrying active_job_ids and completed_jobs, re-registration on
 * `ack.reregister`, reconnection when the stream breaks.
 */
export interface FakeAgent {
  readonly agentId: string;
  /** Its credential. */
  readonly credential: string;
  /** The endpoint it registers (valid after `register()` / `serve()`). */
  readonly endpoint: string;
  readonly client: CoordinatorServiceClient;
  /** Acks received, in order. */
  readonly acks: HealthAck[];
  /** Number of successful RegisterAgent calls. */
  readonly registrations: number;
  /** Starts its AgentService (if `serve`), then RegisterAgent. */
  register(): Promise<RegistrationResponse>;
  /** DeregisterAgent with its own credential. */
  deregister(reason?: string): Promise<unknown>;
  /** Opens the health stream (reconnects on failure until `close()`). */
  connect(): void;
  /** Sends one health update (fields override the agent's own state) and waits for its ack. */
  send(overrides?: Partial<HealthUpdate>): Promise<HealthAck>;
  /** The job is running (listed in active_job_ids from the next update). */
  startJob(jobId: string): void;
  /** The job finished (reported once in completed_jobs; by default 10 tokens generated, 0 prompt tokens). */
  finishJob(jobId: string, outcome?: Partial<JobOutcome>): void;
  /** Mutable state reported in updates. */
  state: { freeVramMb: number; freeRamMb: number; queuedJobs: number; draining: boolean; rttMs: number; cpuPercent: number };
  /** Stops automatic heartbeats, keeping the stream open. */
  stopHeartbeats(): void;
  /** Ends the stream (half-close) and stops reconnecting. */
  close(): Promise<void>;
  /** Cancels the stream abruptly (a dropped stream). */
  drop(): void;
}

class PushQueue<T> implements AsyncIterable<T> {
  private items: T[] = [];
  private waiters: ((r: IteratorResult<T>) => void)[] = [];
  private ended = false;
  push(item: T) {
    const w = this.waiters.shift();
    if (w) w({ value: item, done: false });
    else this.items.push(item);
  }
  end() {
    this.ended = true;
    for (const w of this.waiters.splice(0)) w({ value: undefined as never, done: true });
  }
  [Symbol.asyncIterator](): AsyncIterator<T> {
    return {
      next: () => {
        const item = this.items.shift();
        if (item !== undefined) return Promise.resolve({ value: item, done: false });
        if (this.ended) return Promise.resolve({ value: undefined as never, done: true });
        return new Promise((resolve) => this.waiters.push(resolve));
      },
    };
  }
}

/** Creates (does not register) a fake agent. */
export function createFakeAgent(options: FakeAgentOptions): FakeAgent {
  const channel: Channel = createTitanChannel(options.coordinatorAddress);
  const client = createClientFactory().use(createProtoVersionClientMiddleware()).create(CoordinatorServiceDefinition, channel);
  const metadata = () => Metadata({ authorization: `Bearer ${options.joinToken}` });
  const credential = options.credential ?? randomBytes(32).toString('base64url');
  const serve = options.serve ?? true;
  let server: ServiceServer | undefined;
  let endpoint = options.endpoint ?? `127.0.0.1:${20000 + (hash(options.agentId) % 20000)}`;
  // The first update of every stream carries the credential (it binds the stream).
  let firstOfStream = true;
  const startServing = async () => {
    if (!serve || server) return;
    server = createServiceServer({ logger: createLogger({ service: 'fake-agent', level: 'silent' }), host: '127.0.0.1', port: 0, shutdownTimeoutMs: 200 });
    server.add(AgentServiceDefinition, {
      async *streamInference() {
        throw new ServerError(Status.UNIMPLEMENTED, 'fake agent');
      },
      async getStatus() {
        return { agentId: options.servedAgentId ?? options.agentId, status: 'healthy' };
      },
    });
    const { port } = await server.listen();
    if (options.endpoint === undefined) endpoint = `127.0.0.1:${port}`;
  };
  const active = new Set<string>();
  let completed: JobOutcome[] = [];
  const acks: HealthAck[] = [];
  let registrations = 0;
  let queue: PushQueue<HealthUpdate> | undefined;
  let abort: AbortController | undefined;
  let pendingAcks: ((ack: HealthAck) => void)[] = [];
  let closed = false;
  let timer: NodeJS.Timeout | undefined;
  const state = {
    freeVramMb: options.freeVramMb ?? options.totalVramMb ?? 0,
    freeRamMb: options.freeRamMb ?? options.totalRamMb ?? 16_000,
    queuedJobs: 0,
    draining: false,
    rttMs: options.rttMs ?? 1,
    cpuPercent: 10,
  };

  const register = async () => {
    await startServing();
    const res = await client.registerAgent(
      {
        agentId: options.agentId,
        agentCredential: credential,
        endpoint,
        totalVramMb: options.totalVramMb ?? 0,
        totalRamMb: options.totalRamMb ?? 16_000,
        maxJobs: options.maxJobs ?? 4,
        supportedModels: options.models ?? ['tiny'],
        engine: 'fake',
        maxQueue: 0,
      },
      { metadata: metadata() },
    );
    registrations += 1;
    return res;
  };

  const openStream = () => {
    if (closed) return;
    queue = new PushQueue<HealthUpdate>();
    firstOfStream = true;
    abort = new AbortController();
    const myQueue = queue;
    const stream = client.reportHealth(myQueue, { metadata: metadata(), signal: abort.signal });
    void (async () => {
      try {
        for await (const ack of stream) {
          acks.push(ack);
          if (ack.reregister) await register().catch(() => undefined);
          pendingAcks.shift()?.(ack);
        }
      } catch {
        // stream broke: reconnect below
      }
      if (queue === myQueue && !closed) {
        pendingAcks = [];
        setTimeout(openStream, 50).unref();
      }
    })();
  };

  const buildUpdate = (overrides: Partial<HealthUpdate> = {}): HealthUpdate => {
    const update: HealthUpdate = {
      agentId: options.agentId,
      freeVramMb: state.freeVramMb,
      freeRamMb: state.freeRamMb,
      runningJobs: active.size,
      queuedJobs: state.queuedJobs,
      cpuPercent: state.cpuPercent,
      rttMs: state.rttMs,
      timestamp: Date.now(),
      gpus: [],
      activeJobIds: [...active],
      completedJobs: completed,
      totalRamMb: options.totalRamMb ?? 16_000,
      draining: state.draining,
      agentCredential: firstOfStream ? credential : '',
      rejectedJobIds: [],
      startedJobIds: [],
      ...overrides,
    };
    completed = [];
    firstOfStream = false;
    return update;
  };

  const send = (overrides?: Partial<HealthUpdate>) =>
    new Promise<HealthAck>((resolve, reject) => {
      if (!queue) return reject(new Error('not connected'));
      pendingAcks.push(resolve);
      queue.push(buildUpdate(overrides));
    });

  const agent: FakeAgent = {
    agentId: options.agentId,
    credential,
    get endpoint() {
      return endpoint;
    },
    client,
    acks,
    get registrations() {
      return registrations;
    },
    register,
    deregister(reason = 'shutdown') {
      return client.deregisterAgent({ agentId: options.agentId, reason, agentCredential: credential }, { metadata: metadata() });
    },
    connect() {
      openStream();
      if (options.heartbeatIntervalMs) {
        timer = setInterval(() => {
          if (queue) void send().catch(() => undefined);
        }, options.heartbeatIntervalMs);
        timer.unref();
      }
    },
    send,
    startJob(jobId) {
      active.add(jobId);
    },
    finishJob(jobId, outcome = {}) {
      active.delete(jobId);
      completed.push({ jobId, tokensGenerated: 10, promptTokens: 0, timeToFirstTokenMs: 5, tokensPerSecond: 50, error: '', ...outcome });
    },
    state,
    stopHeartbeats() {
      if (timer) clearInterval(timer);
      timer = undefined;
    },
    async close() {
      closed = true;
      agent.stopHeartbeats();
      queue?.end();
      await new Promise((r) => setTimeout(r, 20));
      abort?.abort();
      channel.close();
      await server?.shutdown();
    },
    drop() {
      agent.stopHeartbeats();
      const a = abort;
      queue = undefined;
      closed = true;
      a?.abort();
      void server?.shutdown();
    },
  };
  return agent;
}

function hash(s: string): number {
  let h = 0;
  for (let i = 0; i < s.length; i++) h = (h * 31 + s.charCodeAt(i)) >>> 0;
  return h;
}

/**
 * Registers, connects and sends a first update; when it serves its AgentService on its own
 * endpoint, also waits (up to 5 s) until the coordinator has verified that endpoint, so the
 * agent is routable when this resolves.
 */
export async function startFakeAgent(options: FakeAgentOptions): Promise<FakeAgent> {
  const agent = createFakeAgent(options);
  await agent.register();
  agent.connect();
  await agent.send();
  if ((options.serve ?? true) && options.endpoint === undefined && options.servedAgentId === undefined) {
    await waitUntilVerified(agent.client, agent.agentId);
  }
  return agent;
}

/**
 * Polls QuerySystemStatus until the agent's state is no longer `unverified` (throws after
 * `timeoutMs`, default 15 s: the coordinator's endpoint check gives an attempt 3 s and retries
 * after a backoff, and under the whole suite on 2 cores a first attempt can time out).
 */
export async function waitUntilVerified(client: CoordinatorServiceClient, agentId: string, timeoutMs = 15_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const status = await client.querySystemStatus({ includeAgents: true });
    const state = status.agents.find((a) => a.agentId === agentId)?.status;
    if (state !== undefined && state !== 'unverified') return;
    if (Date.now() > end) throw new Error(`agent ${agentId} still ${state ?? 'unregistered'} after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

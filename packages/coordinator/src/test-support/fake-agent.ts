import { createClientFactory, Metadata, type Channel } from 'nice-grpc';
import {
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
}

/**
 * A fake agent speaking the real wire format: RegisterAgent with the join token, one
 * ReportHealth stream carrying active_job_ids and completed_jobs, re-registration on
 * `ack.reregister`, reconnection when the stream breaks.
 */
export interface FakeAgent {
  readonly agentId: string;
  readonly client: CoordinatorServiceClient;
  /** Acks received, in order. */
  readonly acks: HealthAck[];
  /** Number of successful RegisterAgent calls. */
  readonly registrations: number;
  register(): Promise<RegistrationResponse>;
  /** Opens the health stream (reconnects on failure until `close()`). */
  connect(): void;
  /** Sends one health update (fields override the agent's own state) and waits for its ack. */
  send(overrides?: Partial<HealthUpdate>): Promise<HealthAck>;
  /** The job is running (listed in active_job_ids from the next update). */
  startJob(jobId: string): void;
  /** The job finished (reported once in completed_jobs). */
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
    const res = await client.registerAgent(
      {
        agentId: options.agentId,
        endpoint: `127.0.0.1:${20000 + (hash(options.agentId) % 20000)}`,
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
      agentCredential: '',
      rejectedJobIds: [],
      startedJobIds: [],
      ...overrides,
    };
    completed = [];
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
    client,
    acks,
    get registrations() {
      return registrations;
    },
    register,
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
      completed.push({ jobId, tokensGenerated: 10, timeToFirstTokenMs: 5, tokensPerSecond: 50, error: '', ...outcome });
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
    },
    drop() {
      agent.stopHeartbeats();
      const a = abort;
      queue = undefined;
      closed = true;
      a?.abort();
    },
  };
  return agent;
}

function hash(s: string): number {
  let h = 0;
  for (let i = 0; i < s.length; i++) h = (h * 31 + s.charCodeAt(i)) >>> 0;
  return h;
}

/** Registers, connects and sends a first update. */
export async function startFakeAgent(options: FakeAgentOptions): Promise<FakeAgent> {
  const agent = createFakeAgent(options);
  await agent.register();
  agent.connect();
  await agent.send();
  return agent;
}

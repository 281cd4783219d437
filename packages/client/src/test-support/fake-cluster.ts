/**
 * Small in-process fakes of the coordinator, agents and instance manager that implement the
 * generated service definitions, with the real proto_version middleware. They let the SDK's
 * tests script exact failures (busy, draining, refused tokens, mid-stream breaks, pruned events).
 */
import { randomUUID } from 'node:crypto';
import { createServer, ServerError, Status, type Server } from 'nice-grpc';
import {
  AgentServiceDefinition,
  CoordinatorServiceDefinition,
  createProtoVersionServerMiddleware,
  instanceManager as im,
  type AgentServiceImplementation,
  type CoordinatorServiceImplementation,
  type StreamResponse,
} from '@titancompute/protocol';

/** How a fake agent behaves. */
export interface FakeAgentSpec {
  agentId: string;
  models?: string[];
  /** Messages it streams (one token each unless `tokensPerMessage`). Default: "tok0 " … "tok9 ". */
  tokens?: string[];
  /** Tokens each message stands for, like an agent that batches (token_count). Default 1. */
  tokensPerMessage?: number;
  tokenDelayMs?: number;
  /** Break the stream (INTERNAL) after this many tokens. */
  failAfterTokens?: number;
  /** Refuse every token (UNAUTHENTICATED). */
  refuseTokens?: boolean;
  /** Answer UNAVAILABLE "draining". */
  draining?: boolean;
  maxJobs?: number;
}

/** A running fake agent. */
export interface FakeAgent {
  readonly agentId: string;
  readonly endpoint: string;
  readonly spec: FakeAgentSpec;
  /** Streams running now. */
  running(): number;
  /** StreamInference calls received. */
  calls(): number;
  stop(): Promise<void>;
}

function decodeToken(token: string): { agentId: string; jobId: string; model: string; maxTokens: number } | undefined {
  try {
    return JSON.parse(Buffer.from(token, 'base64url').toString('utf8')) as never;
  } catch {
    return undefined;
  }
}

/** Starts a fake AgentService on 127.0.0.1:0. */
export async function startFakeAgent(spec: FakeAgentSpec): Promise<FakeAgent> {
  let running = 0;
  let calls = 0;
  let processed = 0;
  const used = new Set<string>();
  const tokens = spec.tokens ?? Array.from({ length: 10 }, (_, i) => `tok${i} `);
  const impl: AgentServiceImplementation = {
    async *streamInference(request, context) {
      calls++;
      if (spec.draining) throw new ServerError(Status.UNAVAILABLE, 'agent is draining');
      const claims = decodeToken(request.sessionToken);
      if (spec.refuseTokens || !claims) throw new ServerError(Status.UNAUTHENTICATED, 'invalid session token');
      if (claims.agentId !== spec.agentId) throw new ServerError(Status.PERMISSION_DENIED, 'token is for another agent');
      if (used.has(claims.jobId)) throw new ServerError(Status.UNAUTHENTICATED, 'token already used');
      used.add(claims.jobId);
      if (request.model !== claims.model) throw new ServerError(Status.PERMISSION_DENIED, 'model differs from the token');
      if (running >= (spec.maxJobs ?? 4)) throw new ServerError(Status.RESOURCE_EXHAUSTED, 'agent queue is full');
      running++;
      const started = Date.now();
      let sent = 0;
      let finish: 'stop' | 'length' | 'cancelled' = 'stop';
      try {
        const limit = Math.min(tokens.length, request.maxTokens || claims.maxTokens || 100);
        if (limit < tokens.length) finish = 'length';
        for (let i = 0; i < limit; i++) {
          if (spec.failAfterTokens !== undefined && sent >= spec.failAfterTokens) {
            throw new ServerError(Status.INTERNAL, 'engine crashed');
          }
          await new Promise<void>((resolve, reject) => {
            const t = setTimeout(resolve, spec.tokenDelayMs ?? 5);
            context.signal.addEventListener(
              'abort',
              () => {
                clearTimeout(t);
                reject(Object.assign(new Error('cancelled'), { name: 'AbortError' }));
              },
              { once: true },
            );
          });
          const text = tokens[i] ?? '';
          const perMessage = spec.tokensPerMessage ?? 1;
          const msg: StreamResponse = {
            sessionToken: '',
            content: text,
            done: false,
            token: text,
            createdAt: Date.now(),
            metadata: {},
            tokenIndex: i * perMessage,
            tokenCount: perMessage,
            stats: undefined,
          };
          yield msg;
          sent++;
        }
        const seconds = Math.max((Date.now() - started) / 1000, 0.001);
        const stats = {
          tokensGenerated: sent,
          timeToFirstTokenMs: spec.tokenDelayMs ?? 5,
          tokensPerSecond: sent / seconds,
          agentId: spec.agentId,
          jobId: claims.jobId,
          finishReason: finish,
          promptTokens: 3,
        };
        yield {
          sessionToken: '',
          content: '',
          done: true,
          token: '',
          createdAt: Date.now(),
          tokenIndex: sent,
          stats,
          metadata: {
            tokens_generated: String(sent),
            time_to_first_token_ms: String(stats.timeToFirstTokenMs),
            tokens_per_second: String(stats.tokensPerSecond),
            agent_id: spec.agentId,
            job_id: claims.jobId,
            finish_reason: finish,
          },
        };
        processed++;
      } finally {
        running--;
      }
    },
    async getStatus() {
      return {
        agentId: spec.agentId,
        status: spec.draining ? 'draining' : 'healthy',
        freeVramMb: 0,
        freeRamMb: 1024,
        activeSessions: running,
        totalRequestsProcessed: processed,
        modelLoaded: (spec.models ?? ['tiny'])[0] ?? '',
        runningJobs: running,
        queuedJobs: 0,
        maxJobs: spec.maxJobs ?? 4,
        gpus: [],
        engine: 'fake',
        tokensPerSecond: 0,
        activeJobIds: [],
        totalTokensGenerated: 0,
      };
    },
  };
  const server = createServer().use(createProtoVersionServerMiddleware());
  server.add(AgentServiceDefinition, impl);
  const port = await server.listen('127.0.0.1:0');
  return {
    agentId: spec.agentId,
    endpoint: `127.0.0.1:${port}`,
    spec,
    running: () => running,
    calls: () => calls,
    stop: () => server.forceShutdown() as unknown as Promise<void>,
  };
}

/** How the fake coordinator behaves. */
export interface FakeCoordinatorOptions {
  /** Agents it schedules on, in preference order (first fit wins). */
  agents: () => Array<Pick<FakeAgent, 'agentId' | 'endpoint' | 'spec' | 'running'>>;
  /** Answer RESOURCE_EXHAUSTED with this retry hint to every request. */
  busyRetryAfterMs?: number;
  /** Speak another contract version (to test ProtocolVersionError). */
  protoVersion?: string;
  /** Port to bind on 127.0.0.1 (e.g. a freed one, to bring a dead address back). Default 0: a free one. */
  port?: number;
}

/** A running fake coordinator. */
export interface FakeCoordinator {
  readonly address: string;
  /** Every InferenceRequest received. */
  readonly requests: Array<{
    excludeAgentIds: string[];
    maxTokens: number;
    temperature: number;
    temperatureSet: boolean;
    parameters: Record<string, string>;
    prompt: string;
    messages: { role: string; content: string }[];
  }>;
  stop(): Promise<void>;
}

/** Starts a fake CoordinatorService on 127.0.0.1:0. */
export async function startFakeCoordinator(options: FakeCoordinatorOptions): Promise<FakeCoordinator> {
  const requests: FakeCoordinator['requests'] = [];
  const impl: CoordinatorServiceImplementation = {
    async requestInference(request, context) {
      requests.push({
        excludeAgentIds: [...request.excludeAgentIds],
        maxTokens: request.maxTokens,
        temperature: request.temperature,
        temperatureSet: request.temperatureSet,
        parameters: { ...request.parameters },
        prompt: request.prompt,
        messages: request.messages.map((m) => ({ role: m.role, content: m.content })),
      });
      if (!request.model) throw new ServerError(Status.INVALID_ARGUMENT, 'model: must not be empty');
      const maxTokens = request.maxTokens || 100;
      if (maxTokens > 4096) throw new ServerError(Status.INVALID_ARGUMENT, 'max_tokens: must be at most 4096');
      if (options.busyRetryAfterMs !== undefined) {
        context.trailer.set('retry-after-ms', String(options.busyRetryAfterMs));
        throw new ServerError(Status.RESOURCE_EXHAUSTED, `all agents serving ${request.model} are busy; retry in ${options.busyRetryAfterMs} ms`);
      }
      const serving = options.agents().filter((a) => (a.spec.models ?? ['tiny']).includes(request.model) && !request.excludeAgentIds.includes(a.agentId));
      if (serving.length === 0) throw new ServerError(Status.UNAVAILABLE, `no agent serves model "${request.model}"`);
      const agent = serving.find((a) => a.running() < (a.spec.maxJobs ?? 4));
      if (!agent) {
        context.trailer.set('retry-after-ms', '250');
        throw new ServerError(Status.RESOURCE_EXHAUSTED, 'all agents are busy');
      }
      const jobId = randomUUID();
      const temperature = request.temperatureSet || request.temperature !== 0 ? request.temperature : 0.7;
      return {
        agentEndpoint: agent.endpoint,
        sessionToken: Buffer.from(JSON.stringify({ agentId: agent.agentId, jobId, model: request.model, maxTokens })).toString('base64url'),
        expiresAt: Math.floor(Date.now() / 1000) + 300,
        jobId,
        estimatedRttMs: 1,
        agentId: agent.agentId,
        maxTokens,
        temperature,
      };
    },
    async registerAgent() {
      throw new ServerError(Status.UNIMPLEMENTED, 'fake');
    },
    async *reportHealth() {
      throw new ServerError(Status.UNIMPLEMENTED, 'fake');
    },
    async querySystemStatus() {
      const agents = options.agents();
      return {
        totalAgents: agents.length,
        healthyAgents: agents.length,
        totalJobs: 0,
        uptime: '1s',
        uptimeSeconds: 1,
        metrics: undefined,
        agents: agents.map((a) => ({
          agentId: a.agentId,
          status: 'healthy',
          freeVramMb: 6000,
          runningJobs: a.running(),
          lastHeartbeat: Date.now(),
          endpoint: a.endpoint,
          totalVramMb: 8000,
          totalRamMb: 16000,
          freeRamMb: 8000,
          queuedJobs: 0,
          maxJobs: a.spec.maxJobs ?? 4,
          rttMs: 1,
          supportedModels: a.spec.models ?? ['tiny'],
          tokensPerSecond: 42.5,
          reservedJobs: 0,
          breakerState: 'closed',
          gpus: [],
          cpuPercent: 5,
        })),
      };
    },
    async getPublicKey() {
      return { publicKeyPem: '', algorithm: 'none', issuer: 'fake', keyId: '', keys: [] };
    },
    async deregisterAgent() {
      return { status: 'ok', message: '' };
    },
  };
  const server: Server = createServer().use(
    createProtoVersionServerMiddleware(options.protoVersion ? { protoVersion: options.protoVersion, protoVersionCompatible: [options.protoVersion] } : {}),
  );
  server.add(CoordinatorServiceDefinition, impl);
  const port = await server.listen(`127.0.0.1:${options.port ?? 0}`);
  return { address: `127.0.0.1:${port}`, requests, stop: () => server.shutdown() };
}

/** A fake instance manager with a scripted event log (for `watch()` resume tests). */
export interface FakeInstanceManager {
  readonly address: string;
  /** Appends an ADDED event for `id` and pushes it to live subscribers. */
  emitAdded(id: string): number;
  /** Ends every open subscription abruptly (simulates a dropped connection). */
  dropSubscriptions(): void;
  /** `fromSequence` of every subscription received. */
  readonly subscriptions: number[];
  stop(): Promise<void>;
}

/** Starts a fake instance manager (SubscribeService + GetService.getInstance) on 127.0.0.1:0. */
export async function startFakeInstanceManager(): Promise<FakeInstanceManager> {
  const events: im.InstanceEvent[] = [];
  const listeners = new Set<{ push(e: im.InstanceEvent): void; fail(err: Error): void }>();
  const subscriptions: number[] = [];
  const subscribe: im.SubscribeServiceImplementation = {
    async *subscribeToInstanceUpdates(request, context) {
      subscriptions.push(request.fromSequence);
      const queue: im.InstanceEvent[] = [];
      let wake: (() => void) | undefined;
      let failure: Error | undefined;
      const listener = {
        push: (e: im.InstanceEvent) => {
          queue.push(e);
          wake?.();
        },
        fail: (err: Error) => {
          failure = err;
          wake?.();
        },
      };
      listeners.add(listener);
      try {
        for (const e of events)
          if (request.fromSequence > 0 && e.sequence > request.fromSequence) yield { event: e, snapshot: false, caughtUp: false, sequence: e.sequence };
        yield { event: undefined, snapshot: false, caughtUp: true, sequence: events.length };
        while (!context.signal.aborted) {
          if (failure) throw new ServerError(Status.UNAVAILABLE, failure.message);
          const next = queue.shift();
          if (next) {
            yield { event: next, snapshot: false, caughtUp: false, sequence: next.sequence };
            continue;
          }
          await new Promise<void>((resolve) => {
            wake = resolve;
            context.signal.addEventListener('abort', () => resolve(), { once: true });
          });
          wake = undefined;
        }
      } finally {
        listeners.delete(listener);
      }
    },
  };
  const server = createServer().use(createProtoVersionServerMiddleware());
  server.add(im.SubscribeServiceDefinition, subscribe);
  const port = await server.listen('127.0.0.1:0');
  return {
    address: `127.0.0.1:${port}`,
    subscriptions,
    emitAdded(id) {
      const event: im.InstanceEvent = {
        sequence: events.length + 1,
        type: im.EventType.EVENT_TYPE_ADDED,
        instanceId: id,
        instanceType: im.InstanceType.INSTANCE_TYPE_INFERENCE_AGENT,
        relatedInstanceId: '',
        service: undefined,
        instance: { id, type: im.InstanceType.INSTANCE_TYPE_INFERENCE_AGENT, hostname: 'h', address: '', metadata: {} },
        removalReason: im.RemovalReason.REMOVAL_REASON_UNSPECIFIED,
        timestampMs: Date.now(),
      };
      events.push(event);
      for (const l of listeners) l.push(event);
      return event.sequence;
    },
    dropSubscriptions() {
      for (const l of listeners) l.fail(new Error('connection dropped'));
      listeners.clear(); // later events reach only new subscriptions (via replay)
    },
    stop: () => server.shutdown(),
  };
}

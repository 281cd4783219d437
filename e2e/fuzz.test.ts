/**
 * Property-based fuzzing of every RPC of every service and of the REST routes, against real
 * servers: an instance manager on SQLite, a coordinator, and an agent registered with both.
 * Hostile messages (built from the contract's own descriptors), hostile changes to valid
 * messages and raw bytes must never produce INTERNAL or UNKNOWN, never hang a unary call, never
 * crash a server, and never leave an invalid value in what the services store and report.
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import type { DescMethod } from '@bufbuild/protobuf';
import fc from 'fast-check';
import { createClientFactory } from 'nice-grpc';
import { createProtoVersionClientMiddleware, createTitanChannel, instanceManager } from '@titancompute/protocol';
import { startAgent, type RunningAgent } from '@titancompute/agent';
import { instanceIdSchema, startInstanceManager, type RunningInstanceManager } from '@titancompute/instance-manager';
import { TitanAdminClient, TitanClient } from '@titancompute/client';
import { startTestCoordinator, waitFor, type TestCoordinator } from '../packages/coordinator/src/test-support/test-coordinator.js';
import { createFakeEngine } from '../packages/agent/src/test-support/fake-engine.js';
import { requestBytes, service } from './fuzz/proto-arbitrary.js';
import { callMetadata, rawCall, type CallOutcome } from './fuzz/raw-call.js';

const MODEL = 'fuzz-model';
const JOIN_TOKEN = 'test-join-token';
const RUNS = Number(process.env.TITAN_FUZZ_RUNS ?? 150);
/** Statuses that mean the server did not understand its own failure. */
const SERVER_FAULTS = new Set([grpc.status.UNKNOWN, grpc.status.INTERNAL, grpc.status.DATA_LOSS, grpc.status.UNIMPLEMENTED]);

let dir: string;
let im: RunningInstanceManager;
let coord: TestCoordinator;
let agent: RunningAgent;
const clients: grpc.Client[] = [];

function rawClient(address: string): grpc.Client {
  const client = new grpc.Client(address, grpc.credentials.createInsecure());
  clients.push(client);
  return client;
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'titan-fuzz-'));
  im = await startInstanceManager({ host: '127.0.0.1', port: 0, storage: 'sqlite', dataDir: join(dir, 'im'), logLevel: 'silent' });
  coord = await startTestCoordinator({ dataDir: join(dir, 'coordinator'), joinToken: JOIN_TOKEN });
  agent = await startAgent({
    agentId: 'fuzz-target',
    host: '127.0.0.1',
    port: 0,
    coordinator: `127.0.0.1:${coord.coordinator.port}`,
    joinToken: JOIN_TOKEN,
    dataDir: join(dir, 'agent'),
    engine: createFakeEngine({ models: [MODEL] }),
    instanceManager: im.address,
    imHealthIntervalMs: 200,
    heartbeatIntervalMs: 200,
    maxConcurrentJobs: 4,
    nvidiaSmiPath: '/nonexistent/nvidia-smi',
    drainTimeoutMs: 500,
    logLevel: 'silent',
  });
  await waitFor(
    async () => (await coord.client.querySystemStatus({ includeAgents: true })).agents.some((a) => a.agentId === 'fuzz-target' && a.status === 'healthy'),
    15_000,
  );
}, 60_000);

afterAll(async () => {
  for (const c of clients) c.close();
  await agent?.stop();
  await coord?.stop();
  await im?.stop();
  rmSync(dir, { recursive: true, force: true });
});

/** Valid requests the fuzzer mutates, so that hostile values reach the handlers' deeper checks. */
const bases: Record<string, Record<string, unknown>> = {
  'titancompute.v1.CoordinatorService.RequestInference': { clientId: 'fuzz', model: MODEL, prompt: 'hello', maxTokens: 4 },
  'titancompute.v1.CoordinatorService.RegisterAgent': {
    agentId: 'fuzz-intruder',
    endpoint: '127.0.0.1:9',
    totalRamMb: 16_000n,
    maxJobs: 4,
    supportedModels: [MODEL],
    agentCredential: 'c'.repeat(43),
  },
  'titancompute.v1.CoordinatorService.ReportHealth': {
    agentId: 'fuzz-intruder',
    freeRamMb: 1000n,
    runningJobs: 0,
    timestamp: 1n,
    totalRamMb: 16_000n,
    agentCredential: 'c'.repeat(43),
  },
  'titancompute.v1.CoordinatorService.DeregisterAgent': { agentId: 'fuzz-intruder', agentCredential: 'c'.repeat(43) },
  'titancompute.v1.AgentService.StreamInference': { sessionToken: 'not-a-token', model: MODEL, prompt: 'hello', maxTokens: 4 },
  'instance_manager.v1.TryService.TryAddInstance': { instance: { id: 'fuzz-instance', type: 7, hostname: 'h', address: 'h:1', metadata: {} } },
  'instance_manager.v1.TryService.TryHealthCheck': { instanceId: 'fuzz-instance' },
};

/** Methods that must never be fuzzed with values that could legitimately stop the target itself. */
const protectedIds = new Set(['fuzz-target']);

function isServerFault(method: DescMethod, outcome: CallOutcome): boolean {
  if (SERVER_FAULTS.has(outcome.code)) return true;
  // A unary call that runs into the deadline hung on its input.
  return method.methodKind === 'unary' && outcome.code === grpc.status.DEADLINE_EXCEEDED;
}

async function fuzzService(typeName: string, address: () => string, bearer?: string) {
  const desc = service(typeName);
  const client = rawClient(address());
  const faults: string[] = [];
  for (const method of desc.methods) {
    const key = `${typeName}.${method.name}`;
    const arb = fc.array(requestBytes(method.input, bases[key]), {
      minLength: 1,
      maxLength: method.methodKind.endsWith('streaming') && method.methodKind !== 'server_streaming' ? 3 : 1,
    });
    await fc
      .assert(
        fc.asyncProperty(arb, fc.boolean(), async (messages, withAuth) => {
          const text = Buffer.concat(messages.map((m) => Buffer.from(m))).toString('latin1');
          if ([...protectedIds].some((id) => text.includes(id))) return true;
          const outcome = await rawCall(client, method, messages, callMetadata(withAuth ? bearer : undefined));
          if (isServerFault(method, outcome)) {
            faults.push(`${method.name}: ${grpc.status[outcome.code]} ${outcome.details}`);
            return false;
          }
          return true;
        }),
        { numRuns: RUNS, endOnFailure: true },
      )
      .catch((err: unknown) => faults.push(`${method.name}: ${(err as Error).message.split('\n').slice(0, 6).join(' | ')}`));
  }
  expect(faults).toEqual([]);
}

describe('every RPC survives hostile and random messages', () => {
  it('CoordinatorService (with and without the join token)', async () => {
    await fuzzService('titancompute.v1.CoordinatorService', () => `127.0.0.1:${coord.coordinator.port}`, JOIN_TOKEN);
  }, 240_000);

  it('AdminService (with and without the admin token)', async () => {
    await fuzzService('titancompute.v1.AdminService', () => `127.0.0.1:${coord.coordinator.port}`, coord.coordinator.adminToken);
  }, 240_000);

  it('AgentService', async () => {
    await fuzzService('titancompute.v1.AgentService', () => `127.0.0.1:${agent.port}`);
  }, 240_000);

  it.each([
    'instance_manager.v1.TryService',
    'instance_manager.v1.GetService',
    'instance_manager.v1.PostService',
    'instance_manager.v1.SubscribeService',
    'stats.v1.StatsService',
  ])(
    '%s',
    async (typeName) => {
      await fuzzService(typeName, () => im.address);
    },
    240_000,
  );
});

describe('REST routes survive hostile requests', () => {
  const paths = [
    '/api/v1/inference/request',
    '/api/v1/health',
    '/api/v1/status',
    '/metrics',
    '/',
    '/api/v1/../../etc/passwd',
    '/api/v1/inference/request?x=%zz',
  ];
  const bodies = fc.oneof(
    fc.json().map((j) => ({ body: j, type: 'application/json' })),
    fc.anything().map((a) => ({ body: JSON.stringify(a) ?? 'null', type: 'application/json' })),
    fc
      .record(
        {
          clientId: fc.string(),
          model: fc.constantFrom(MODEL, '', 'x'.repeat(300)),
          prompt: fc.string(),
          maxTokens: fc.oneof(fc.integer(), fc.double(), fc.string()),
          temperature: fc.oneof(fc.double(), fc.string()),
          parameters: fc.dictionary(fc.string(), fc.anything()),
        },
        { requiredKeys: [] },
      )
      .map((o) => ({ body: JSON.stringify(o), type: 'application/json' })),
    fc.string({ maxLength: 200 }).map((s) => ({ body: s, type: 'text/plain' })),
    fc.string({ maxLength: 200 }).map((s) => ({ body: s, type: 'application/json' })),
  );

  it('never answers 5xx other than 503, and API errors are JSON', async () => {
    const bad: string[] = [];
    await fc.assert(
      fc.asyncProperty(fc.constantFrom(...paths), fc.constantFrom('GET', 'POST', 'PUT', 'DELETE', 'PATCH'), bodies, async (path, method, { body, type }) => {
        const res = await fetch(`${coord.httpUrl}${path}`, {
          method,
          headers: { 'content-type': type },
          ...(method === 'GET' ? {} : { body }),
          signal: AbortSignal.timeout(5000),
        });
        const text = await res.text();
        if (res.status >= 500 && res.status !== 503) bad.push(`${method} ${path} → ${res.status} ${text.slice(0, 200)}`);
        if (path.startsWith('/api/v1/inference') && res.status >= 400) {
          try {
            JSON.parse(text);
          } catch {
            bad.push(`${method} ${path} → ${res.status} not JSON: ${text.slice(0, 200)}`);
          }
        }
        return true;
      }),
      { numRuns: RUNS * 4 },
    );
    expect(bad).toEqual([]);
  }, 120_000);
});

describe('OpenAI-compatible and admin routes survive hostile requests (coordinator and agent)', () => {
  const coordinatorPaths = [
    '/v1/chat/completions',
    '/v1/completions',
    '/v1/embeddings',
    '/v1/models',
    '/v1/models/x%00y',
    '/v1',
    '/admin/keys',
    '/admin/keys/x',
  ];
  const agentPaths = ['/v1/chat/completions', '/v1/completions', '/v1/embeddings', '/v1/models', '/health', '/v1/completions?session_token=%zz'];
  const anyValue = fc.oneof(fc.anything(), fc.integer(), fc.double(), fc.string(), fc.boolean(), fc.constant(null));
  const message = fc.record(
    {
      role: fc.oneof(fc.constantFrom('system', 'developer', 'user', 'assistant', 'tool', 'function', ''), fc.string()),
      content: fc.oneof(
        fc.string(),
        fc.constant(null),
        fc.array(fc.oneof(fc.record({ type: fc.constantFrom('text', 'image_url'), text: anyValue }), anyValue), { maxLength: 3 }),
      ),
      tool_calls: anyValue,
    },
    { requiredKeys: [] },
  );
  const openAiBody = fc
    .record(
      {
        model: fc.oneof(fc.constant(MODEL), fc.string(), anyValue),
        messages: fc.oneof(fc.array(message, { maxLength: 4 }), anyValue),
        prompt: fc.oneof(fc.string(), fc.array(fc.oneof(fc.string(), fc.integer()), { maxLength: 3 }), anyValue),
        input: fc.oneof(fc.string(), fc.array(fc.string(), { maxLength: 3 }), anyValue),
        max_tokens: fc.oneof(fc.integer({ min: -5, max: 8 }), fc.integer(), fc.double(), fc.string()),
        max_completion_tokens: anyValue,
        temperature: fc.oneof(fc.double(), anyValue),
        top_p: anyValue,
        seed: fc.oneof(fc.integer(), anyValue),
        stop: fc.oneof(fc.string(), fc.array(fc.string(), { maxLength: 20 }), anyValue),
        stream: fc.oneof(fc.boolean(), anyValue),
        stream_options: anyValue,
        n: fc.oneof(fc.integer({ min: -1, max: 3 }), anyValue),
        tools: anyValue,
        response_format: anyValue,
        logprobs: anyValue,
        encoding_format: fc.oneof(fc.constantFrom('float', 'base64', 'int8'), anyValue),
        name: fc.string(),
        requests_per_minute: anyValue,
      },
      { requiredKeys: [] },
    )
    .map((o) => ({ body: JSON.stringify(o), type: 'application/json' }));
  const bodies = fc.oneof(
    openAiBody,
    fc.string({ maxLength: 200 }).map((s) => ({ body: s, type: 'application/json' })),
  );
  const headers = fc.constantFrom<Record<string, string>>(
    {},
    { authorization: 'Bearer tk-nope' },
    { authorization: 'Bearer x.y.z' },
    { authorization: 'Basic Zm9v' },
  );

  it('never answers 5xx other than 503, and every error is JSON in its API’s shape', async () => {
    const bad: string[] = [];
    const targets = [
      { base: coord.httpUrl, paths: coordinatorPaths },
      { base: `http://${agent.httpEndpoint}`, paths: agentPaths },
    ];
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom(...targets),
        fc.nat(),
        fc.constantFrom('GET', 'POST', 'DELETE'),
        bodies,
        headers,
        async (target, pick, method, { body, type }, extra) => {
          const path = target.paths[pick % target.paths.length]!;
          const res = await fetch(`${target.base}${path}`, {
            method,
            headers: { 'content-type': type, ...extra },
            ...(method === 'GET' ? {} : { body }),
            signal: AbortSignal.timeout(10_000),
          });
          const text = await res.text();
          const where = `${method} ${target.base}${path} ${body.slice(0, 120)}`;
          if (res.status >= 500 && res.status !== 503) bad.push(`${where} → ${res.status} ${text.slice(0, 200)}`);
          if (res.status >= 400) {
            try {
              const json = JSON.parse(text) as { error?: unknown };
              const openAiShape = typeof json.error === 'object' && json.error !== null && typeof (json.error as { message?: unknown }).message === 'string';
              if (path.startsWith('/v1') && !openAiShape) bad.push(`${where} → ${res.status} not OpenAI's error shape: ${text.slice(0, 200)}`);
            } catch {
              bad.push(`${where} → ${res.status} not JSON: ${text.slice(0, 200)}`);
            }
          }
          return true;
        },
      ),
      { numRuns: RUNS * 4 },
    );
    expect(bad).toEqual([]);
  }, 240_000);
});

describe('after the fuzzing', () => {
  it('stores and reports only valid values', async () => {
    const status = await coord.client.querySystemStatus({ includeAgents: true, includeMetrics: true });
    for (const a of status.agents) {
      expect(a.agentId).toMatch(/^[A-Za-z0-9._:-]{1,128}$/);
      expect(a.endpoint.length).toBeLessThanOrEqual(300);
      for (const value of [
        a.freeVramMb,
        a.freeRamMb,
        a.totalRamMb,
        a.totalVramMb,
        a.runningJobs,
        a.queuedJobs,
        a.maxJobs,
        a.rttMs,
        a.tokensPerSecond,
        a.reservedJobs,
        a.cpuPercent,
      ]) {
        expect(Number.isFinite(value)).toBe(true);
        expect(value).toBeGreaterThanOrEqual(0);
      }
    }
    const channel = createTitanChannel(im.address);
    try {
      const get = createClientFactory().use(createProtoVersionClientMiddleware()).create(instanceManager.GetServiceDefinition, channel);
      const { instances } = await get.getAllInstances({});
      for (const d of instances) {
        expect(instanceIdSchema.safeParse(d.instance?.id).success).toBe(true);
        expect(Number.isFinite(d.lastHealthCheckMs) && d.lastHealthCheckMs >= 0).toBe(true);
      }
    } finally {
      channel.close();
    }
  });

  it('every service still serves: a generation goes through end to end', async () => {
    // The fuzzing called AdminService with the admin token, so it may have created API keys (any
    // valid name goes), and then the coordinator rightly requires one (--auth auto): the check
    // runs with a fresh key of its own either way, so it does not depend on what was generated.
    const admin = new TitanAdminClient({ coordinator: `127.0.0.1:${coord.coordinator.port}`, adminToken: coord.coordinator.adminToken });
    const { secret } = await admin.createApiKey({ name: `after-fuzz-${Date.now()}` }).finally(() => admin.close());
    const client = new TitanClient({ coordinator: `127.0.0.1:${coord.coordinator.port}`, clientId: 'after-fuzz', apiKey: secret });
    try {
      let text = '';
      for await (const chunk of client.generate({ model: MODEL, prompt: 'still alive?', maxTokens: 4 })) if (!chunk.done) text += chunk.text;
      expect(text.length).toBeGreaterThan(0);
    } finally {
      client.close();
    }
  }, 60_000);
});

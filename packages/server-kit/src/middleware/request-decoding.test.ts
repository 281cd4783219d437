import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { AgentServiceDefinition, CoordinatorServiceDefinition, instanceManager, PROTO_VERSION, stats } from '@titancompute/protocol';
import { createLogger } from '../logger.js';
import { createServiceServer, type ServiceServer } from '../server.js';

const buf = fileURLToPath(new URL('../../../../node_modules/.bin/buf', import.meta.url));

interface MethodShape {
  requestStream: boolean;
  responseStream: boolean;
}

/** Handlers that fail loudly if a request reaches them; client streams are read to the end first. */
function stubImplementation(definition: { methods: Record<string, MethodShape> }): never {
  const reached = () => new Error('the handler was reached');
  return Object.fromEntries(
    Object.entries(definition.methods).map(([key, m]) => {
      if (m.requestStream) {
        return [
          key,
          async function* (requests: AsyncIterable<unknown>) {
            for await (const _ of requests) yield* [];
            throw reached();
          },
        ];
      }
      if (m.responseStream) {
        return [
          key,
          async function* () {
            yield* [];
            throw reached();
          },
        ];
      }
      return [
        key,
        async () => {
          throw reached();
        },
      ];
    }),
  ) as never;
}

/** Runs `buf curl` (a client that knows nothing of our generated code; it learns the schema by reflection). */
function curl(address: string, path: string, body: string): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(
      buf,
      ['curl', '--protocol', 'grpc', '--http2-prior-knowledge', '-H', `proto_version: ${PROTO_VERSION}`, '-d', body, `http://${address}/${path}`],
      (err, stdout, stderr) => resolve({ code: err ? Number((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    );
  });
}

let server: ServiceServer;
let address: string;
beforeAll(async () => {
  server = createServiceServer({ logger: createLogger({ service: 'test', level: 'silent' }), host: '127.0.0.1', port: 0 });
  for (const definition of [
    CoordinatorServiceDefinition,
    AgentServiceDefinition,
    instanceManager.TryServiceDefinition,
    instanceManager.SubscribeServiceDefinition,
    instanceManager.PostServiceDefinition,
    instanceManager.GetServiceDefinition,
    stats.StatsServiceDefinition,
  ]) {
    server.add(definition, stubImplementation(definition));
  }
  address = `127.0.0.1:${(await server.listen()).port}`;
});
afterAll(() => server.shutdown());

const TOO_BIG = '9007199254740993'; // 2^53 + 1
const TOO_SMALL = '-9007199254740993';

describe('int64 values JavaScript cannot hold', () => {
  // One method per service that takes an int64/uint64, over each call shape (unary,
  // server stream, bidi stream) and nesting (top level, nested message, repeated message).
  const cases = [
    ['titancompute.v1.CoordinatorService/RegisterAgent', `{"agentId":"a","totalVramMb":"${TOO_BIG}"}`, 'total_vram_mb', TOO_BIG],
    [
      'titancompute.v1.CoordinatorService/ReportHealth',
      `{"agentId":"a","gpus":[{"index":0},{"memoryTotalMb":"${TOO_BIG}"}]}`,
      'gpus[1].memory_total_mb',
      TOO_BIG,
    ],
    [
      'instance_manager.v1.PostService/PostSystemMetrics',
      `{"instanceId":"i","metrics":{"usedMemoryBytes":"${TOO_SMALL}"}}`,
      'metrics.used_memory_bytes',
      TOO_SMALL,
    ],
    ['instance_manager.v1.SubscribeService/SubscribeToInstanceUpdates', '{"fromSequence":"18446744073709551615"}', 'from_sequence', '18446744073709551615'],
    ['stats.v1.StatsService/UploadStats', `{"hostname":"h","stats":{"totalMemoryBytes":"${TOO_BIG}"}}`, 'stats.total_memory_bytes', TOO_BIG],
  ] as const;

  it.each(cases)('%s answers INVALID_ARGUMENT naming the field', async (path, body, field, value) => {
    const { code, stderr } = await curl(address, path, body);
    expect(code).not.toBe(0);
    expect(stderr).toContain('"code": "invalid_argument"');
    expect(stderr).toContain(`${field}: ${value} is out of range`);
    expect(stderr).not.toContain('deserializing');
  });

  it('still decodes the largest safe integer and hands it to the handler', async () => {
    // 2^53 - 1 decodes; the stub handler then fails on purpose, which proves the request reached it.
    const { stderr } = await curl(address, 'titancompute.v1.CoordinatorService/RegisterAgent', `{"agentId":"a","totalVramMb":"9007199254740991"}`);
    expect(stderr).toContain('"code": "internal"');
  });
});

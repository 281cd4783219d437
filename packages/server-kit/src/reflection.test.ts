import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { AgentServiceDefinition, CoordinatorServiceDefinition, instanceManager, stats } from '@titancompute/protocol';
import { createLogger } from './logger.js';
import { createServiceServer, type ServiceServer } from './server.js';

const buf = fileURLToPath(new URL('../../../node_modules/.bin/buf', import.meta.url));
const run = promisify(execFile);
const curl = (...args: string[]) => run(buf, ['curl', '--protocol', 'grpc', '--http2-prior-knowledge', ...args]);

const definitions = [
  CoordinatorServiceDefinition,
  AgentServiceDefinition,
  instanceManager.TryServiceDefinition,
  instanceManager.SubscribeServiceDefinition,
  instanceManager.PostServiceDefinition,
  instanceManager.GetServiceDefinition,
  stats.StatsServiceDefinition,
];

let server: ServiceServer;
let address: string;
beforeAll(async () => {
  server = createServiceServer({ logger: createLogger({ service: 'test', level: 'silent' }), host: '127.0.0.1', port: 0 });
  // Reflection does not call handlers: empty implementations are enough.
  for (const d of definitions) server.add(d, Object.fromEntries(Object.keys(d.methods).map((k) => [k, async () => ({})])) as never);
  address = `http://127.0.0.1:${(await server.listen()).port}`;
});
afterAll(() => server.shutdown());

describe('server reflection', () => {
  it('describes every service it lists, grpc.health.v1.Health included', async () => {
    const listed = (await curl('--list-services', address)).stdout.trim().split('\n');
    expect(listed).toEqual(expect.arrayContaining([...definitions.map((d) => d.fullName), 'grpc.health.v1.Health']));
    // --list-methods needs the descriptor of every listed service, which reflection must serve.
    const methods = (await curl('--list-methods', address)).stdout.trim().split('\n');
    for (const service of listed) expect(methods.some((m) => m.startsWith(`${service}/`))).toBe(true);
    expect(methods).toEqual(expect.arrayContaining(['grpc.health.v1.Health/Check', 'grpc.health.v1.Health/Watch']));
  });

  it('lets `buf curl` call grpc.health.v1.Health/Check with the schema it learns by reflection', async () => {
    const { stdout } = await curl('-d', '{}', `${address}/grpc.health.v1.Health/Check`);
    expect(JSON.parse(stdout)).toEqual({ status: 'SERVING' });
    const named = await curl('-d', '{"service":"titancompute.v1.CoordinatorService"}', `${address}/grpc.health.v1.Health/Check`);
    expect(JSON.parse(named.stdout)).toEqual({ status: 'SERVING' });
  });
});

import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { ClientError, createClientFactory, createServer, Metadata, ServerError, Status, type Server } from 'nice-grpc';
import {
  AgentServiceDefinition,
  COMPATIBLE_PROTO_VERSIONS,
  createProtoVersionCheck,
  createProtoVersionClientMiddleware,
  createProtoVersionServerMiddleware,
  createTitanChannel,
  PROTO_VERSION,
  type AgentServiceImplementation,
  type ProtoVersionServerOptions,
} from '../index.js';

const agentImpl: AgentServiceImplementation = {
  async getStatus(request) {
    return { agentId: request.agentId || 'agent-a', status: 'healthy' } as never;
  },
  async *streamInference(request) {
    for (const word of request.prompt.split(' ')) yield { content: word } as never;
  },
};

async function startServer(options: ProtoVersionServerOptions): Promise<{ server: Server; address: string }> {
  const server = createServer().use(createProtoVersionServerMiddleware(options));
  server.add(AgentServiceDefinition, agentImpl);
  const port = await server.listen('127.0.0.1:0');
  return { server, address: `127.0.0.1:${port}` };
}

function clientFor(address: string, version?: { protoVersion: string; protoVersionCompatible?: string[] }) {
  const factory = version ? createClientFactory().use(createProtoVersionClientMiddleware(version)) : createClientFactory();
  return factory.create(AgentServiceDefinition, createTitanChannel(address));
}

async function collect(stream: AsyncIterable<{ content: string }>): Promise<string[]> {
  const out: string[] = [];
  for await (const m of stream) out.push(m.content);
  return out;
}

async function expectFailedPrecondition(promise: Promise<unknown>): Promise<ClientError> {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(ClientError);
  expect((err as ClientError).code).toBe(Status.FAILED_PRECONDITION);
  return err as ClientError;
}

describe('proto_version middleware, strict policy', () => {
  let strict: { server: Server; address: string };
  beforeAll(async () => {
    strict = await startServer({ protoVersionPolicy: 'strict' });
  });
  afterAll(async () => {
    await strict.server.shutdown();
  });

  it('passes a client with the same version, unary and streaming', async () => {
    const client = clientFor(strict.address, { protoVersion: PROTO_VERSION });
    await expect(client.getStatus({ agentId: 'x' })).resolves.toMatchObject({ agentId: 'x' });
    await expect(collect(client.streamInference({ prompt: 'a b c' }))).resolves.toEqual(['a', 'b', 'c']);
  });

  it('sends the version by default from the generated contract', async () => {
    const client = createClientFactory().use(createProtoVersionClientMiddleware()).create(AgentServiceDefinition, createTitanChannel(strict.address));
    await expect(client.getStatus({})).resolves.toMatchObject({ status: 'healthy' });
  });

  it('refuses a call without the header, naming the server version and the fix', async () => {
    const err = await expectFailedPrecondition(clientFor(strict.address).getStatus({}));
    expect(err.details).toContain('missing proto_version');
    expect(err.details).toContain(PROTO_VERSION);
    expect(err.details).toContain('allow-missing');
  });

  it('refuses an incompatible version with both versions in the message, unary and streaming', async () => {
    const client = clientFor(strict.address, { protoVersion: 'deadbeefdeadbeef', protoVersionCompatible: ['deadbeefdeadbeef'] });
    const unary = await expectFailedPrecondition(client.getStatus({}));
    expect(unary.details).toContain('deadbeefdeadbeef');
    expect(unary.details).toContain(PROTO_VERSION);
    const streaming = await expectFailedPrecondition(collect(client.streamInference({ prompt: 'a' })));
    expect(streaming.details).toContain('deadbeefdeadbeef');
    expect(streaming.details).toContain(PROTO_VERSION);
  });

  it('returns the server version in the response headers', async () => {
    const client = clientFor(strict.address, { protoVersion: PROTO_VERSION });
    let header: Metadata | undefined;
    await client.getStatus({}, { onHeader: (h) => (header = h) });
    expect(header?.get('proto_version')).toBe(PROTO_VERSION);
  });
});

describe('proto_version compatibility sets (rolling upgrades)', () => {
  let server: { server: Server; address: string };
  beforeAll(async () => {
    // A newer server whose contract is a compatible extension of 'older00000000000'.
    server = await startServer({ protoVersion: 'newer00000000000', protoVersionCompatible: ['older00000000000', 'newer00000000000'] });
  });
  afterAll(async () => {
    await server.server.shutdown();
  });

  it('passes an older compatible client', async () => {
    const client = clientFor(server.address, { protoVersion: 'older00000000000', protoVersionCompatible: ['older00000000000'] });
    await expect(client.getStatus({})).resolves.toMatchObject({ status: 'healthy' });
  });

  it('passes a newer client that declares the server version compatible', async () => {
    const client = clientFor(server.address, {
      protoVersion: 'newest0000000000',
      protoVersionCompatible: ['older00000000000', 'newer00000000000', 'newest0000000000'],
    });
    await expect(client.getStatus({})).resolves.toMatchObject({ status: 'healthy' });
  });

  it('refuses a version outside both sets', async () => {
    const client = clientFor(server.address, { protoVersion: 'other00000000000', protoVersionCompatible: ['other00000000000'] });
    const err = await expectFailedPrecondition(client.getStatus({}));
    expect(err.details).toContain('other00000000000');
    expect(err.details).toContain('newer00000000000');
  });

  it('exports the current version as the last compatible one', () => {
    expect(PROTO_VERSION).toMatch(/^[0-9a-f]{16}$/);
    expect(COMPATIBLE_PROTO_VERSIONS.at(-1)).toBe(PROTO_VERSION);
  });
});

describe('proto_version middleware, allow-missing policy', () => {
  let lenient: { server: Server; address: string };
  beforeAll(async () => {
    lenient = await startServer({ protoVersionPolicy: 'allow-missing' });
  });
  afterAll(async () => {
    await lenient.server.shutdown();
  });

  it('passes a client that predates the header (v1)', async () => {
    await expect(clientFor(lenient.address).getStatus({})).resolves.toMatchObject({ status: 'healthy' });
    await expect(collect(clientFor(lenient.address).streamInference({ prompt: 'x y' }))).resolves.toEqual(['x', 'y']);
  });

  it('still refuses a present but incompatible version', async () => {
    const client = clientFor(lenient.address, { protoVersion: 'deadbeefdeadbeef', protoVersionCompatible: [] });
    await expectFailedPrecondition(client.getStatus({}));
  });
});

describe('createProtoVersionCheck', () => {
  /** The metadata and header of one call, as the check sees them. */
  const callContext = (sent: Record<string, string>) => {
    const header = Metadata();
    return { context: { metadata: Metadata(sent), header }, header };
  };

  it('remembers its verdict per client pair and gives the same answer every time (compatible, incompatible, missing, exempt)', () => {
    const check = createProtoVersionCheck({ protoVersion: '5', protoVersionCompatible: ['5', '4'] });
    for (let round = 0; round < 3; round++) {
      const same = callContext({ proto_version: '5', proto_compatible_versions: '5' });
      expect(() => check('/x.Svc/Call', same.context)).not.toThrow();
      expect(same.header.get('proto_version')).toBe('5');
      // An older client this server accepts, and a newer one that says it accepts 5.
      expect(() => check('/x.Svc/Call', callContext({ proto_version: '4' }).context)).not.toThrow();
      expect(() => check('/x.Svc/Call', callContext({ proto_version: '6', proto_compatible_versions: ' 6 , 5 ' }).context)).not.toThrow();
      expect(() => check('/x.Svc/Call', callContext({ proto_version: '6', proto_compatible_versions: '6' }).context)).toThrow(
        /proto_version mismatch: client sent 6/,
      );
      expect(() => check('/x.Svc/Call', callContext({}).context)).toThrow(/missing proto_version metadata/);
      const health = callContext({});
      expect(() => check('/grpc.health.v1.Health/Check', health.context)).not.toThrow();
      expect(health.header.get('proto_version')).toBeUndefined();
    }
  });

  it('stays right past the number of pairs it remembers', () => {
    const check = createProtoVersionCheck({ protoVersion: '5', protoVersionCompatible: ['5'] });
    for (let i = 0; i < 200; i++) {
      expect(() => check('/x.Svc/Call', callContext({ proto_version: String(100 + i) }).context)).toThrow(ServerError);
      expect(() => check('/x.Svc/Call', callContext({ proto_version: String(100 + i), proto_compatible_versions: '5' }).context)).not.toThrow();
    }
  });
});

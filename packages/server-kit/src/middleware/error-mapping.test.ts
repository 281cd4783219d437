import { afterEach, describe, expect, it } from '@jest/globals';
import { ClientError, createClientFactory, type Metadata, Status } from 'nice-grpc';
import { AgentServiceDefinition, createProtoVersionClientMiddleware, createTitanChannel, type AgentServiceImplementation } from '@titancompute/protocol';
import { createLogger } from '../logger.js';
import { createServiceServer, type ServiceServer } from '../server.js';
import { isGrpcMappedError } from './error-mapping.js';

/** An error that declares its status and a trailer, as a package's base error does. */
class BusyError extends Error {
  readonly grpcStatus = Status.RESOURCE_EXHAUSTED;
  readonly grpcTrailers = { 'retry-after-ms': '250' };
}

const impl: AgentServiceImplementation = {
  async getStatus(request) {
    if (request.agentId === 'busy') throw new BusyError('every slot is busy; retry after 250 ms');
    if (request.agentId === 'plain') throw Object.assign(new Error('agent_id: must be short'), { grpcStatus: Status.INVALID_ARGUMENT });
    return { agentId: request.agentId, status: 'healthy' } as never;
  },
  // eslint-disable-next-line require-yield
  async *streamInference() {
    throw new BusyError('every slot is busy; retry after 250 ms');
  },
};

let server: ServiceServer | undefined;
afterEach(async () => {
  await server?.shutdown();
  server = undefined;
});

async function client() {
  server = createServiceServer({ logger: createLogger({ service: 'test', level: 'silent' }), host: '127.0.0.1', port: 0 });
  server.add(AgentServiceDefinition, impl);
  const { port } = await server.listen();
  return createClientFactory()
    .use(createProtoVersionClientMiddleware())
    .create(AgentServiceDefinition, createTitanChannel(`127.0.0.1:${port}`));
}

/** Runs `call` with an `onTrailer` hook; returns the ClientError it fails with and the trailer. */
async function failure(call: (options: { onTrailer: (t: Metadata) => void }) => Promise<unknown>) {
  let trailer: Metadata | undefined;
  const err = await call({ onTrailer: (t) => (trailer = t) }).then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(ClientError);
  return { err: err as ClientError, trailer };
}

describe('error mapping', () => {
  it("sends a mapped error's declared status, message and trailers (unary)", async () => {
    const c = await client();
    const { err, trailer } = await failure((o) => c.getStatus({ agentId: 'busy' }, o));
    expect(err.code).toBe(Status.RESOURCE_EXHAUSTED);
    expect(err.details).toBe('every slot is busy; retry after 250 ms');
    expect(trailer?.get('retry-after-ms')).toBe('250');
  });

  it("sends a mapped error's trailers on a server stream too", async () => {
    const c = await client();
    const { err, trailer } = await failure(async (o) => {
      for await (const _ of c.streamInference({ prompt: 'x' }, o)) void _;
    });
    expect(err.code).toBe(Status.RESOURCE_EXHAUSTED);
    expect(trailer?.get('retry-after-ms')).toBe('250');
  });

  it('maps an error without trailers to its status and sends no extra trailer', async () => {
    const c = await client();
    const { err, trailer } = await failure((o) => c.getStatus({ agentId: 'plain' }, o));
    expect(err.code).toBe(Status.INVALID_ARGUMENT);
    expect(err.details).toBe('agent_id: must be short');
    expect(trailer?.get('retry-after-ms')).toBeUndefined();
  });

  it('recognises mapped errors by their numeric grpcStatus only', () => {
    expect(isGrpcMappedError(new BusyError('x'))).toBe(true);
    expect(isGrpcMappedError(new Error('x'))).toBe(false);
    expect(isGrpcMappedError({ message: 'x', grpcStatus: Status.INTERNAL })).toBe(false);
    expect(isGrpcMappedError(Object.assign(new Error('x'), { grpcStatus: 'INTERNAL' }))).toBe(false);
  });
});

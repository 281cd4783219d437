import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from '@jest/globals';
import { ClientError, createChannel, createClient, createClientFactory, Status } from 'nice-grpc';
import { HealthDefinition, HealthCheckResponse_ServingStatus } from 'nice-grpc-server-health/lib/proto/grpc/health/v1/health.js';
import { AgentServiceDefinition, createProtoVersionClientMiddleware, createTitanChannel, type AgentServiceImplementation } from '@titancompute/protocol';
import { createLogger } from './logger.js';
import { createServiceServer, type ServiceServer } from './server.js';
import { createTestPki } from './test-support/certs.js';

const logger = createLogger({ service: 'test', level: 'silent' });
const buf = fileURLToPath(new URL('../../../node_modules/.bin/buf', import.meta.url));
const run = promisify(execFile);

let releaseStream: (() => void) | undefined;
const impl: AgentServiceImplementation = {
  async getStatus(request) {
    if (request.agentId === 'boom') throw new Error('secret database password is hunter2');
    return { agentId: request.agentId, status: 'healthy' } as never;
  },
  async *streamInference(request) {
    yield { content: 'first' } as never;
    await new Promise<void>((resolve) => (releaseStream = resolve));
    yield { content: request.prompt } as never;
  },
};

const servers: ServiceServer[] = [];
async function start(extra: Partial<Parameters<typeof createServiceServer>[0]> = {}) {
  const server = createServiceServer({ logger, host: '127.0.0.1', port: 0, ...extra });
  server.add(AgentServiceDefinition, impl);
  servers.push(server);
  const { port } = await server.listen();
  return { server, address: `127.0.0.1:${port}` };
}
afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => s.shutdown()));
});

const versioned = (address: string) =>
  createClientFactory().use(createProtoVersionClientMiddleware()).create(AgentServiceDefinition, createTitanChannel(address));

describe('createServiceServer', () => {
  it('serves grpc.health.v1 without a proto_version header, and NOT_SERVING once shutdown begins', async () => {
    const { server, address } = await start({ shutdownTimeoutMs: 2000 });
    const health = createClient(HealthDefinition, createChannel(address));
    await expect(health.check({ service: '' })).resolves.toEqual({ status: HealthCheckResponse_ServingStatus.SERVING });
    await expect(health.check({ service: 'titancompute.v1.AgentService' })).resolves.toEqual({
      status: HealthCheckResponse_ServingStatus.SERVING,
    });
    // Hold a call in flight so the server stays up while draining.
    const stream = versioned(address).streamInference({ prompt: 'second' });
    const iterator = stream[Symbol.asyncIterator]();
    await expect(iterator.next()).resolves.toMatchObject({ value: { content: 'first' } });
    const stopping = server.shutdown();
    await expect(health.check({ service: '' })).resolves.toEqual({ status: HealthCheckResponse_ServingStatus.NOT_SERVING });
    // New work is refused so clients go elsewhere.
    await expect(versioned(address).getStatus({})).rejects.toMatchObject({ code: Status.UNAVAILABLE });
    releaseStream?.();
    // The in-flight stream drains to completion.
    await expect(iterator.next()).resolves.toMatchObject({ value: { content: 'second' } });
    await stopping;
  });

  it('cuts calls that do not drain before the shutdown deadline', async () => {
    const { server, address } = await start({ shutdownTimeoutMs: 200 });
    const iterator = versioned(address).streamInference({ prompt: 'never' })[Symbol.asyncIterator]();
    await iterator.next();
    const started = Date.now();
    await server.shutdown();
    expect(Date.now() - started).toBeLessThan(2000);
    await expect(iterator.next()).rejects.toBeInstanceOf(ClientError);
    releaseStream?.();
  });

  it('maps unexpected handler errors to INTERNAL without leaking their message', async () => {
    const { address } = await start();
    const err = await versioned(address)
      .getStatus({ agentId: 'boom' })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ClientError);
    expect((err as ClientError).code).toBe(Status.INTERNAL);
    expect((err as ClientError).details).not.toContain('hunter2');
    expect((err as ClientError).details).toMatch(/internal error \(reference [0-9a-f]{8}\)/);
  });

  it('checks proto_version on service calls', async () => {
    const { address } = await start();
    const bare = createClient(AgentServiceDefinition, createChannel(address));
    await expect(bare.getStatus({})).rejects.toMatchObject({ code: Status.FAILED_PRECONDITION });
    await expect(versioned(address).getStatus({ agentId: 'a' })).resolves.toMatchObject({ agentId: 'a' });
  });

  it('answers server reflection, so `buf curl --list-services` works', async () => {
    const { address } = await start();
    const { stdout } = await run(buf, ['curl', '--protocol', 'grpc', '--http2-prior-knowledge', '--list-services', `http://${address}`]);
    expect(stdout.split('\n')).toEqual(expect.arrayContaining(['titancompute.v1.AgentService', 'grpc.health.v1.Health']));
  });
});

describe('TLS and mTLS', () => {
  const pki = createTestPki();

  it('serves TLS to a client that trusts the CA, and refuses plaintext', async () => {
    const { address } = await start({ tls: { certFile: pki.serverCert, keyFile: pki.serverKey } });
    const client = createClientFactory()
      .use(createProtoVersionClientMiddleware())
      .create(AgentServiceDefinition, createTitanChannel(address, { tls: { caFile: pki.caCert } }));
    await expect(client.getStatus({ agentId: 'tls' })).resolves.toMatchObject({ agentId: 'tls' });
    await expect(versioned(address).getStatus({}, { signal: AbortSignal.timeout(3000) })).rejects.toMatchObject({
      code: Status.UNAVAILABLE,
    });
  });

  it('serves mTLS to a client with a certificate from the CA', async () => {
    const { address } = await start({ tls: { certFile: pki.serverCert, keyFile: pki.serverKey, caFile: pki.caCert } });
    const client = createClientFactory()
      .use(createProtoVersionClientMiddleware())
      .create(AgentServiceDefinition, createTitanChannel(address, { tls: { caFile: pki.caCert, certFile: pki.clientCert, keyFile: pki.clientKey } }));
    await expect(client.getStatus({ agentId: 'mtls' })).resolves.toMatchObject({ agentId: 'mtls' });
  });

  it('refuses, under mTLS, a client without a certificate and one from another CA', async () => {
    const { address } = await start({ tls: { certFile: pki.serverCert, keyFile: pki.serverKey, caFile: pki.caCert } });
    const noCert = createClientFactory()
      .use(createProtoVersionClientMiddleware())
      .create(AgentServiceDefinition, createTitanChannel(address, { tls: { caFile: pki.caCert } }));
    await expect(noCert.getStatus({}, { signal: AbortSignal.timeout(3000) })).rejects.toMatchObject({ code: Status.UNAVAILABLE });
    const rogue = createClientFactory()
      .use(createProtoVersionClientMiddleware())
      .create(AgentServiceDefinition, createTitanChannel(address, { tls: { caFile: pki.caCert, certFile: pki.rogueClientCert, keyFile: pki.rogueClientKey } }));
    await expect(rogue.getStatus({}, { signal: AbortSignal.timeout(3000) })).rejects.toMatchObject({ code: Status.UNAVAILABLE });
  });
});

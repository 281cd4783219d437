import { Writable } from 'node:stream';
import { afterEach, describe, expect, it } from '@jest/globals';
import { type ClientError, createClientFactory, type Metadata, Status } from 'nice-grpc';
import { pino, type Level } from 'pino';
import {
  AgentServiceDefinition,
  createProtoVersionClientMiddleware,
  createTitanChannel,
  PROTO_VERSION,
  type AgentServiceImplementation,
} from '@titancompute/protocol';
import { createServiceServer, type ServiceServer } from '../server.js';

let release: (() => void) | undefined;
const impl: AgentServiceImplementation = {
  async getStatus(request) {
    if (request.agentId === 'slow') await new Promise<void>((r) => (release = r));
    if (request.agentId === 'busy')
      throw Object.assign(new Error('no slot'), { grpcStatus: Status.RESOURCE_EXHAUSTED, grpcTrailers: { 'retry-after-ms': '7' } });
    return { agentId: request.agentId };
  },
  async *streamInference(request, context) {
    for (const word of request.prompt.split(' ')) yield { content: word };
    // Until the client goes away; the stream then ends without an error on this side.
    await new Promise((r) => context.signal.addEventListener('abort', r, { once: true }));
  },
};

const servers: ServiceServer[] = [];
afterEach(async () => {
  release?.();
  await Promise.all(servers.splice(0).map((s) => s.shutdown()));
});

/** A server on the one service middleware, logging at `level` into `lines`. */
async function start(level: Level) {
  const lines: Record<string, unknown>[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const l of chunk.toString().split('\n').filter(Boolean)) lines.push(JSON.parse(l) as Record<string, unknown>);
      done();
    },
  });
  const server = createServiceServer({ logger: pino({ level }, sink), host: '127.0.0.1', port: 0, shutdownTimeoutMs: 5000 });
  server.add(AgentServiceDefinition, impl);
  servers.push(server);
  const { port } = await server.listen();
  const channel = createTitanChannel(`127.0.0.1:${port}`);
  const client = createClientFactory().use(createProtoVersionClientMiddleware()).create(AgentServiceDefinition, channel);
  const bare = createClientFactory().create(AgentServiceDefinition, channel);
  const calls = () => lines.filter((l) => typeof l.method === 'string' && String(l.method).startsWith('/titancompute.'));
  return { server, client, bare, calls };
}

const failure = (p: Promise<unknown>) =>
  p.then(
    () => undefined,
    (e: unknown) => e as ClientError,
  );

describe('the one service middleware', () => {
  it('in order: drain refuses before logging; logging sees the mapped status; proto_version is checked and sent; trailers of mapped errors go out', async () => {
    const { server, client, bare, calls } = await start('debug');
    let header: Metadata | undefined;
    let trailer: Metadata | undefined;
    await expect(client.getStatus({ agentId: 'a' }, { onHeader: (h) => (header = h) })).resolves.toMatchObject({ agentId: 'a' });
    expect(header?.get('proto_version')).toBe(PROTO_VERSION);
    const busy = await failure(client.getStatus({ agentId: 'busy' }, { onTrailer: (t) => (trailer = t) }));
    expect(busy).toMatchObject({ code: Status.RESOURCE_EXHAUSTED, details: 'no slot' });
    expect(trailer?.get('retry-after-ms')).toBe('7');
    const missing = await failure(bare.getStatus({ agentId: 'a' }));
    expect(missing).toMatchObject({ code: Status.FAILED_PRECONDITION });
    // One call in flight while the server drains: new calls are refused, and not logged.
    const slow = client.getStatus({ agentId: 'slow' });
    await new Promise((r) => setTimeout(r, 100));
    const stopping = server.shutdown();
    await new Promise((r) => setTimeout(r, 100));
    expect(await failure(client.getStatus({ agentId: 'late' }))).toMatchObject({ code: Status.UNAVAILABLE });
    release?.();
    await expect(slow).resolves.toMatchObject({ agentId: 'slow' });
    await stopping;
    expect(calls().map((l) => [l.code, l.level])).toEqual([
      ['OK', 20],
      ['RESOURCE_EXHAUSTED', 30],
      ['FAILED_PRECONDITION', 30],
      ['OK', 20],
    ]);
    expect(calls()[2]).toMatchObject({ details: expect.stringContaining('missing proto_version metadata') });
  });

  it('passes stream messages through and logs a stream the client cancelled as CANCELLED', async () => {
    const { client, calls } = await start('debug');
    const abort = new AbortController();
    const words: string[] = [];
    const done = (async () => {
      for await (const m of client.streamInference({ prompt: 'one two three', sessionToken: 't' } as never, { signal: abort.signal })) {
        words.push(m.content);
        if (words.length === 3) abort.abort();
      }
    })().catch((e: unknown) => e);
    await done;
    expect(words).toEqual(['one', 'two', 'three']);
    for (let i = 0; i < 100 && calls().length === 0; i++) await new Promise((r) => setTimeout(r, 10));
    expect(calls()).toEqual([expect.objectContaining({ method: '/titancompute.v1.AgentService/StreamInference', code: 'CANCELLED', level: 20 })]);
  });

  it('writes no line for calls whose level is off (OK at info)', async () => {
    const { client, calls } = await start('info');
    await client.getStatus({ agentId: 'a' });
    await failure(client.getStatus({ agentId: 'busy' }));
    await new Promise((r) => setTimeout(r, 50));
    expect(calls().map((l) => l.code)).toEqual(['RESOURCE_EXHAUSTED']);
  });
});

import { connect } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import type { FastifyInstance } from 'fastify';
import { createLogger } from '@titancompute/server-kit';
import { createHttpServer } from './http-server.js';

let app: FastifyInstance;
let port: number;
const routed: unknown[] = [];

beforeAll(async () => {
  app = createHttpServer({
    registry: { list: () => [] } as never,
    metrics: { request: () => undefined, decision: () => undefined } as never,
    route: async (input) => {
      routed.push(input);
      throw new Error('not under test');
    },
    logger: createLogger({ service: 'test', level: 'silent' }),
    requestTimeoutMs: 600,
    headersTimeoutMs: 300,
  });
  await app.listen({ host: '127.0.0.1', port: 0 });
  const addr = app.server.address();
  port = typeof addr === 'object' && addr ? addr.port : 0;
});
afterAll(() => app.close());

/** Sends `raw` on a plain socket, then stalls; resolves with everything received once the server closes it. */
function sendAndStall(raw: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1', () => socket.write(raw));
    let received = '';
    socket.on('data', (d) => (received += d.toString()));
    socket.on('error', reject);
    socket.on('close', () => resolve(received));
  });
}

describe('REST server hardening', () => {
  it('closes a connection whose body stalls, answering 408', async () => {
    const received = await sendAndStall(
      'POST /api/v1/inference/request HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 200\r\n\r\n{"client_id":',
    );
    expect(received).toMatch(/^HTTP\/1\.1 408 /);
    expect(routed).toHaveLength(0);
  });

  it('closes a connection whose headers stall, answering 408', async () => {
    const received = await sendAndStall('GET /api/v1/health HTTP/1.1\r\nHost: x\r\nX-Slow: ');
    expect(received).toMatch(/^HTTP\/1\.1 408 /);
  });

  it('answers GET on a POST route with 405, an Allow header and the v1 error shape', async () => {
    const res = await fetch(`http://127.0.0.1:${port}/api/v1/inference/request`);
    expect(res.status).toBe(405);
    expect(res.headers.get('allow')).toBe('POST');
    expect(await res.json()).toEqual({
      error: 'method_not_allowed',
      code: 405,
      message: 'GET is not allowed on /api/v1/inference/request; use POST',
    });
    const post = await fetch(`http://127.0.0.1:${port}/api/v1/health`, { method: 'POST', body: '{}' });
    expect(post.status).toBe(405);
    expect(post.headers.get('allow')).toBe('GET, HEAD');
    // Unknown paths stay 404.
    const missing = await fetch(`http://127.0.0.1:${port}/api/v1/nothing`);
    expect(missing.status).toBe(404);
    expect(await missing.json()).toMatchObject({ error: 'not_found', code: 404 });
  });

  it.each([
    [{ parameters: { top_p: { nested: true } } }, 'parameters.top_p: must be a string, number or boolean'],
    [{ parameters: { stop: [1] } }, 'parameters.stop: must be a string, number or boolean'],
    [{ parameters: 'x' }, 'parameters: must be an object of strings'],
    [{ exclude_agent_ids: ['a', 7] }, 'exclude_agent_ids[1]: must be a string'],
    [{ max_tokens: 'many' }, 'max_tokens: must be a number'],
  ])('names the path of a bad nested field: %j', async (extra, message) => {
    const res = await fetch(`http://127.0.0.1:${port}/api/v1/inference/request`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ client_id: 'c', model: 'm', prompt: 'p', ...extra }),
    });
    expect(res.status).toBe(400);
    expect(await res.json()).toEqual({ error: 'invalid_argument', code: 400, message });
  });
});

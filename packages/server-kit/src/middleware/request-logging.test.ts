import { Writable } from 'node:stream';
import { afterEach, describe, expect, it } from '@jest/globals';
import { Status } from 'nice-grpc-common';
import { createClientFactory } from 'nice-grpc';
import { pino } from 'pino';
import { AgentServiceDefinition, createProtoVersionClientMiddleware, createTitanChannel, type AgentServiceImplementation } from '@titancompute/protocol';
import { createServiceServer, type ServiceServer } from '../server.js';
import { logLevelOf } from './request-logging.js';

/** A domain error that knows its status, as the coordinator's and agent's errors do. */
class NotFoundThing extends Error {
  readonly grpcStatus = Status.NOT_FOUND;
}

const impl: AgentServiceImplementation = {
  async getStatus(request) {
    if (request.agentId === 'missing') throw new NotFoundThing('agent "missing" is not registered');
    if (request.agentId === 'bad') throw Object.assign(new Error('agent_id: must be short'), { grpcStatus: Status.INVALID_ARGUMENT });
    if (request.agentId === 'boom') throw new Error('disk on fire');
    return { agentId: request.agentId };
  },
  async *streamInference() {
    yield {};
  },
};

const servers: ServiceServer[] = [];
afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => s.shutdown()));
});

async function startWithLog() {
  const lines: Array<Record<string, unknown>> = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const l of chunk.toString().split('\n').filter(Boolean)) lines.push(JSON.parse(l) as Record<string, unknown>);
      done();
    },
  });
  const logger = pino({ level: 'debug' }, sink);
  const server = createServiceServer({ logger, host: '127.0.0.1', port: 0 });
  server.add(AgentServiceDefinition, impl);
  servers.push(server);
  const { port } = await server.listen();
  const client = createClientFactory()
    .use(createProtoVersionClientMiddleware())
    .create(AgentServiceDefinition, createTitanChannel(`127.0.0.1:${port}`));
  const callLog = async (agentId: string) => {
    await client.getStatus({ agentId }).catch(() => undefined);
    const deadline = Date.now() + 5000;
    for (;;) {
      const line = lines.find((l) => l.method === '/titancompute.v1.AgentService/GetStatus' && l.code !== undefined && !l.seen);
      if (line) {
        line.seen = true;
        return line;
      }
      if (Date.now() > deadline) throw new Error('no request log line');
      await new Promise((r) => setTimeout(r, 10));
    }
  };
  return { callLog, lines };
}

const INFO = 30;
const ERROR = 50;
const DEBUG = 20;

describe('request logging', () => {
  it('logs the status the caller receives: client errors at info, server faults at error', async () => {
    const { callLog } = await startWithLog();
    expect(await callLog('missing')).toMatchObject({ code: 'NOT_FOUND', level: INFO, details: 'agent "missing" is not registered' });
    expect(await callLog('bad')).toMatchObject({ code: 'INVALID_ARGUMENT', level: INFO });
    expect(await callLog('boom')).toMatchObject({ code: 'INTERNAL', level: ERROR });
    expect(await callLog('fine')).toMatchObject({ code: 'OK', level: DEBUG });
  });

  it('maps every status to one level', () => {
    expect(logLevelOf(Status.OK)).toBe('debug');
    expect(logLevelOf(Status.CANCELLED)).toBe('debug');
    expect(logLevelOf(Status.UNAUTHENTICATED)).toBe('info');
    expect(logLevelOf(Status.RESOURCE_EXHAUSTED)).toBe('info');
    expect(logLevelOf(Status.UNKNOWN)).toBe('error');
    expect(logLevelOf(Status.DATA_LOSS)).toBe('error');
  });
});

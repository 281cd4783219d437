import { afterEach, describe, expect, it } from '@jest/globals';
import { AgentServiceDefinition, type AgentRegistration } from '@titancompute/protocol';
import { createLogger, createServiceServer, type ServiceServer } from '@titancompute/server-kit';
import { AgentRecord } from '../registry/agent-record.js';
import { createEndpointVerifier } from './endpoint-verifier.js';

let server: ServiceServer | undefined;
afterEach(async () => {
  await server?.shutdown();
  server = undefined;
});

const record = (agentId: string, endpoint: string) =>
  new AgentRecord(
    {
      agentId,
      endpoint,
      httpEndpoint: '',
      agentCredential: 'c'.repeat(43),
      totalVramMb: 0,
      totalRamMb: 1000,
      maxJobs: 1,
      maxQueue: 0,
      supportedModels: ['m'],
      engine: 'fake',
      capabilities: {},
      gpus: [],
    } satisfies AgentRegistration,
    Date.now(),
    {},
    Date.now,
  );

describe('endpoint verifier', () => {
  it('dials at most maxConcurrentProbes endpoints at once; the others wait their turn and are verified too', async () => {
    let inFlight = 0;
    let most = 0;
    server = createServiceServer({ logger: createLogger({ service: 'agents', level: 'silent' }), host: '127.0.0.1', port: 0, shutdownTimeoutMs: 200 });
    // One server answers for every agent id, slowly enough for the probes to overlap.
    server.add(AgentServiceDefinition, {
      async getStatus(request) {
        inFlight += 1;
        most = Math.max(most, inFlight);
        await new Promise((r) => setTimeout(r, 40));
        inFlight -= 1;
        return { agentId: request.agentId, status: 'healthy' };
      },
      // eslint-disable-next-line require-yield
      async *streamInference() {
        throw new Error('not here');
      },
    });
    const { port } = await server.listen();
    const verifier = createEndpointVerifier({ logger: createLogger({ service: 'test', level: 'silent' }), maxConcurrentProbes: 2 });
    const records = Array.from({ length: 7 }, (_, i) => record(`agent-${i}`, `127.0.0.1:${port}`));
    const outcomes = await Promise.all(records.map((r) => verifier.verify(r)));
    expect(outcomes).toEqual(Array(7).fill('verified'));
    expect(records.map((r) => r.endpointCheck)).toEqual(Array(7).fill('verified'));
    expect(most).toBe(2);
    verifier.stop();
  });
});

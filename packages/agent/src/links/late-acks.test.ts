/**
 * Regression (issue 10, finding 7: agents grew ~10 KB per request): finished jobs were kept and
 * re-sent in every health update until an ack echoed the *latest* update. Under steady load the
 * next update always leaves before the previous ack arrives (a coordinator across a network), so
 * the list — and every update — grew without end.
 */
import { afterEach, describe, expect, it } from '@jest/globals';
import { createServer, ServerError, Status } from 'nice-grpc';
import { CoordinatorServiceDefinition, type DeepPartial, type HealthAck, type HealthUpdate } from '@titancompute/protocol';
import { startAgent } from '../agent.js';
import { collect, createAgentClient } from '../test-support/agent-client.js';
import { createFakeEngine } from '../test-support/fake-engine.js';
import { createTestSigner } from '../test-support/token-signer.js';

const AGENT_ID = 'late-ack-agent';
const ACK_DELAY_MS = 150;
const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!();
});

describe('health updates with acks that arrive late', () => {
  it('carry only the jobs finished since the last acknowledged update, and every job reaches the coordinator', async () => {
    const signer = await createTestSigner({ aud: AGENT_ID, model: 'fake-model' });
    const updates: HealthUpdate[] = [];
    const server = createServer();
    server.add(CoordinatorServiceDefinition, {
      async requestInference() {
        throw new ServerError(Status.UNIMPLEMENTED, 'test');
      },
      async querySystemStatus() {
        return {};
      },
      async registerAgent() {
        return { status: 'registered', heartbeatIntervalSeconds: 1 };
      },
      // Each update is acked ACK_DELAY_MS after it arrived, without holding back the next ones.
      async *reportHealth(incoming: AsyncIterable<HealthUpdate>): AsyncGenerator<DeepPartial<HealthAck>> {
        const acks: DeepPartial<HealthAck>[] = [];
        let wake: (() => void) | undefined;
        let ended = false;
        void (async () => {
          try {
            for await (const u of incoming) {
              updates.push(u);
              setTimeout(() => {
                acks.push({ agentId: u.agentId, status: 'ok', echoTimestamp: u.timestamp });
                wake?.();
              }, ACK_DELAY_MS);
            }
          } catch {
            // the agent went away
          }
          ended = true;
          wake?.();
        })();
        for (;;) {
          const ack = acks.shift();
          if (ack) {
            yield ack;
            continue;
          }
          if (ended) return;
          await new Promise<void>((r) => (wake = r));
          wake = undefined;
        }
      },
      async getPublicKey() {
        return { publicKeyPem: signer.publicKeyPem, algorithm: 'EdDSA', issuer: 'titancompute-coordinator', keyId: signer.kid, keys: [signer.publicKey()] };
      },
      async deregisterAgent() {
        return { status: 'deregistered' };
      },
    });
    const port = await server.listen('127.0.0.1:0');
    cleanups.push(() => server.forceShutdown());
    const agent = await startAgent({
      agentId: AGENT_ID,
      host: '127.0.0.1',
      port: 0,
      coordinator: `127.0.0.1:${port}`,
      joinToken: 'join',
      engine: createFakeEngine({ models: ['fake-model'], tokenDelayMs: 5 }),
      heartbeatIntervalMs: 1000,
      nvidiaSmiPath: '/nonexistent/nvidia-smi',
      drainTimeoutMs: 1000,
      logLevel: 'silent',
    });
    const { client, channel } = createAgentClient(`127.0.0.1:${agent.port}`);
    cleanups.push(async () => {
      channel.close();
      await agent.stop();
    });

    const JOBS = 60;
    const jobIds: string[] = [];
    for (let i = 0; i < JOBS; i++) {
      const jobId = `job-${i}`;
      jobIds.push(jobId);
      const token = await signer.sign({ job_id: jobId, max_tokens: 2 });
      await collect(
        client.streamInference({ sessionToken: token, model: 'fake-model', prompt: 'hi', maxTokens: 2, temperature: 0, stream: true, options: {} }),
      );
    }
    const deadline = Date.now() + 10_000;
    const reported = () => new Set(updates.flatMap((u) => u.completedJobs.map((o) => o.jobId)));
    while (jobIds.some((id) => !reported().has(id)) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    expect(jobIds.filter((id) => !reported().has(id))).toEqual([]);
    // Jobs finish every few ms and acks take 150 ms: an update carries the jobs of about one
    // ack delay, not every job since the agent started.
    const largest = Math.max(...updates.map((u) => u.completedJobs.length));
    expect(largest).toBeLessThan(JOBS / 2);
  });
});

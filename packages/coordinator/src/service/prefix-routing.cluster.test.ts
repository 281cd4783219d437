import { afterEach, describe, expect, it } from '@jest/globals';
import { createClientFactory } from 'nice-grpc';
import { CoordinatorServiceDefinition, createProtoVersionClientMiddleware, createTitanChannel } from '@titancompute/protocol';
import { SCRIPTED_MODEL, startRealCluster, type RealCluster } from '@titancompute/test-support';

let cluster: RealCluster | undefined;
let closeChannel: (() => void) | undefined;
afterEach(async () => {
  closeChannel?.();
  await cluster?.stop();
  cluster = undefined;
});

const SYSTEM = 'You are the support assistant of a large shop; answer briefly and cite the order number. '.repeat(12);

/** A coordinator client (grants only: each holds its agent's slot for the claim window). */
function coordinatorOf(c: RealCluster) {
  const channel = createTitanChannel(c.coordinator.address);
  closeChannel = () => channel.close();
  return createClientFactory().use(createProtoVersionClientMiddleware()).create(CoordinatorServiceDefinition, channel);
}

describe('prefix-aware routing with real agents (approximate mode, the default)', () => {
  it("sends a conversation's next turn to the agent that served the last while it has room, elsewhere when it has none", async () => {
    // Weights other than prefix are zeroed by the test cluster: without affinity, ties go to agent-a.
    cluster = await startRealCluster([{ agentId: 'agent-a' }, { agentId: 'agent-b', maxConcurrentJobs: 2 }]);
    const coordinator = coordinatorOf(cluster);
    const turn = (n: number) => [
      { role: 'system', content: SYSTEM },
      ...Array.from({ length: n }, (_, i) => [
        { role: 'user', content: `Question ${i}` },
        { role: 'assistant', content: `Answer ${i}` },
      ]).flat(),
      { role: 'user', content: `Question ${n}` },
    ];
    const ask = (n: number, exclude: string[] = []) =>
      coordinator.requestInference({ clientId: `c-${n}`, model: SCRIPTED_MODEL, messages: turn(n), maxTokens: 4, excludeAgentIds: exclude });

    // Turn 1 lands on agent-b (agent-a excluded, as a failover would).
    expect((await ask(0, ['agent-a'])).agentId).toBe('agent-b');
    // Turn 2 follows its prefix to agent-b, which has a free slot (1 of 2 held), although the tie-break prefers agent-a.
    expect((await ask(1)).agentId).toBe('agent-b');
    // Turn 3: agent-b's two slots are held, so the conversation spills to agent-a.
    expect((await ask(2)).agentId).toBe('agent-a');
    // A different conversation (another system prompt) is routed by load alone: the tie goes to agent-a.
    const other = await coordinator.requestInference({ clientId: 'd', model: SCRIPTED_MODEL, prompt: 'x'.repeat(600), maxTokens: 4 });
    expect(other.agentId).toBe('agent-a');
  });

  it('--prefix-routing off routes by load alone', async () => {
    cluster = await startRealCluster([{ agentId: 'agent-a' }, { agentId: 'agent-b', maxConcurrentJobs: 2 }], { coordinator: { prefixRouting: 'off' } });
    const coordinator = coordinatorOf(cluster);
    const messages = [
      { role: 'system', content: SYSTEM },
      { role: 'user', content: 'Hi' },
    ];
    expect((await coordinator.requestInference({ clientId: 'c1', model: SCRIPTED_MODEL, messages, maxTokens: 4, excludeAgentIds: ['agent-a'] })).agentId).toBe(
      'agent-b',
    );
    expect((await coordinator.requestInference({ clientId: 'c2', model: SCRIPTED_MODEL, messages, maxTokens: 4 })).agentId).toBe('agent-a');
  });
});

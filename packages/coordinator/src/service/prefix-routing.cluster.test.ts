import { afterEach, describe, expect, it } from '@jest/globals';
import { createClientFactory } from 'nice-grpc';
import { createLlamaCppEngine } from '@titancompute/agent';
import {
  AgentServiceDefinition,
  CoordinatorServiceDefinition,
  createProtoVersionClientMiddleware,
  createTitanChannel,
  type InferenceResponse,
} from '@titancompute/protocol';
import { SCRIPTED_MODEL, startRealCluster, type RealCluster } from '@titancompute/test-support';
import type { PrefixRoutingMode } from '../scheduler/prefix-affinity.js';

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

/** Runs a granted job on its agent (StreamInference with the grant's token), to its end. */
async function runGrant(grant: InferenceResponse, model: string, prompt: string): Promise<void> {
  const channel = createTitanChannel(grant.agentEndpoint);
  try {
    const agent = createClientFactory().use(createProtoVersionClientMiddleware()).create(AgentServiceDefinition, channel);
    let done = false;
    const stream = agent.streamInference({
      sessionToken: grant.sessionToken,
      model,
      prompt,
      maxTokens: grant.maxTokens,
      temperature: grant.temperature,
      stream: true,
    });
    for await (const message of stream) done ||= message.done;
    expect(done).toBe(true);
  } finally {
    channel.close();
  }
}

describe('precise prefix routing fed by real llama.cpp agents', () => {
  const PREFIX = 'The warehouse keeps the spare parts of every machine on shelves sorted by serial number; '.repeat(20);
  const UNRELATED = 'Write a haiku about mountains and the sea, then explain every line of it to a child; '.repeat(20);
  // One sequence per agent: an agent's KV cache holds its last prompt only.
  const llama = () => createLlamaCppEngine({ threads: 1, sequences: 1, contextSize: 2048, gpu: false });

  /**
   * agent-b serves a prefix, then an unrelated prompt evicts it from agent-b's only sequence, and
   * the prefix comes back: returns where each request went.
   */
  async function scenario(mode: PrefixRoutingMode) {
    const engines = [llama(), llama()] as const;
    cluster = await startRealCluster(
      [
        { agentId: 'agent-a', engine: engines[0] },
        { agentId: 'agent-b', engine: engines[1] },
      ],
      { coordinator: { prefixRouting: mode } },
    );
    const coordinator = coordinatorOf(cluster);
    const model = engines[0].models[0]!;
    const ask = async (clientId: string, prompt: string, exclude: string[] = []) => {
      const grant = await coordinator.requestInference({ clientId, model, prompt, maxTokens: 2, excludeAgentIds: exclude });
      await runGrant(grant, model, prompt);
      return grant.agentId;
    };
    const routed: string[] = [];
    // agent-b serves the prefix (agent-a excluded, as a failover would); its next prompt follows it there.
    routed.push(await ask('c1', `${PREFIX}Where is part 1?`, ['agent-a']));
    routed.push(await ask('c2', `${PREFIX}Where is part 2?`));
    // An unrelated prompt takes agent-b's only sequence: agent-b reports holding that one alone.
    routed.push(await ask('c3', UNRELATED, ['agent-a']));
    // The prefix again.
    routed.push(await ask('c4', `${PREFIX}Where is part 3?`));
    return { routed, coordinator, model };
  }

  it('routes by what agents report holding: an evicted prefix no longer attracts its requests', async () => {
    const { routed, coordinator, model } = await scenario('precise');
    // Turn 4: no agent reports the prefix any more, so load decides (the tie goes to agent-a).
    expect(routed).toEqual(['agent-b', 'agent-b', 'agent-b', 'agent-a']);
    // agent-a now reports the prefix: its next request follows it there, the unrelated one stays on agent-b.
    expect((await coordinator.requestInference({ clientId: 'c5', model, prompt: `${PREFIX}Where is part 4?`, maxTokens: 2 })).agentId).toBe('agent-a');
    expect((await coordinator.requestInference({ clientId: 'c6', model, prompt: `${UNRELATED}Again.`, maxTokens: 2 })).agentId).toBe('agent-b');
    // agent-b's second request evaluated only its suffix: its cache counts say so (GetStatus and /metrics).
    const b = cluster!.agents[1]!;
    const channel = createTitanChannel(b.endpoint);
    try {
      const status = await createClientFactory().use(createProtoVersionClientMiddleware()).create(AgentServiceDefinition, channel).getStatus({});
      expect(status.prefixCacheHitTokens).toBeGreaterThan(300);
      expect(status.prefixCacheQueryTokens).toBeGreaterThan(status.prefixCacheHitTokens);
    } finally {
      channel.close();
    }
    const metrics = await (await fetch(`http://127.0.0.1:${b.metricsPort}/metrics`)).text();
    expect(metrics).toMatch(/^titan_agent:prefix_cache_hits_total\{[^}]*model="llama-2-tiny-random"[^}]*\} [1-9]\d*$/m);
  }, 60_000);

  it('approximate mode, for contrast, keeps sending the prefix to where it was sent, although it was evicted there', async () => {
    const { routed } = await scenario('approximate');
    expect(routed).toEqual(['agent-b', 'agent-b', 'agent-b', 'agent-b']);
  }, 60_000);
});

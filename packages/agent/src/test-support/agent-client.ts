import { createChannel, createClientFactory, type Channel } from 'nice-grpc';
import { AgentServiceDefinition, createProtoVersionClientMiddleware, type AgentServiceClient, type StreamResponse } from '@titancompute/protocol';

/** A client of an agent's AgentService (with proto_version) and its channel. */
export function createAgentClient(address: string): { client: AgentServiceClient; channel: Channel } {
  const channel = createChannel(address);
  return { client: createClientFactory().use(createProtoVersionClientMiddleware()).create(AgentServiceDefinition, channel), channel };
}

/** Collects a whole stream. */
export async function collect(stream: AsyncIterable<StreamResponse>): Promise<StreamResponse[]> {
  const out: StreamResponse[] = [];
  for await (const msg of stream) out.push(msg);
  return out;
}

/** Runs `fn` and returns the gRPC status code it failed with (throws when it succeeds). */
export async function statusOf(fn: () => Promise<unknown>): Promise<{ code: number; details: string }> {
  try {
    await fn();
  } catch (err) {
    const e = err as { code?: number; details?: string };
    if (typeof e.code === 'number') return { code: e.code, details: e.details ?? '' };
    throw err;
  }
  throw new Error('expected the call to fail');
}

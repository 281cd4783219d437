/** Shared helpers of the end-to-end tests: raw clients, cluster views; free ports and polling come from test-support. */
import { execFile } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createClientFactory, type Channel } from 'nice-grpc';
import {
  AgentServiceDefinition,
  CoordinatorServiceDefinition,
  createProtoVersionClientMiddleware,
  createTitanChannel,
  type AgentStatus,
  type StreamResponse,
} from '@titancompute/protocol';
import { freePort } from '@titancompute/test-support/free-port';
import { waitFor } from '@titancompute/test-support/wait-for';
import { BINS, repoRoot, type startCluster } from '../scripts/lib/launch.mjs';

export { BINS, freePort, repoRoot, waitFor };

/** The model every agent serves out of the box. */
export const MODEL = 'llama-2-tiny-random';

export type Cluster = Awaited<ReturnType<typeof startCluster>>;
export type ServiceProcess = Cluster['coordinator'];

export function tempDir(prefix: string): string {
  return mkdtempSync(join(tmpdir(), `titan-e2e-${prefix}-`));
}

const channels = new Map<string, Channel>();
/** One channel per address for the whole test file; {@link closeChannels} in afterAll. */
function channelTo(address: string): Channel {
  let channel = channels.get(address);
  if (!channel) channels.set(address, (channel = createTitanChannel(address)));
  return channel;
}

/** Closes every channel the helpers opened. */
export function closeChannels(): void {
  for (const channel of channels.values()) channel.close();
  channels.clear();
}

function versionMiddleware(protoVersion?: string) {
  return protoVersion ? createProtoVersionClientMiddleware({ protoVersion, protoVersionCompatible: [protoVersion] }) : createProtoVersionClientMiddleware();
}

/** Coordinator client with the proto_version middleware (optionally a skewed version). */
export function coordinatorClient(address: string, protoVersion?: string) {
  return createClientFactory().use(versionMiddleware(protoVersion)).create(CoordinatorServiceDefinition, channelTo(address));
}

/** Agent client with the proto_version middleware (optionally a skewed version). */
export function agentClient(address: string, protoVersion?: string) {
  return createClientFactory().use(versionMiddleware(protoVersion)).create(AgentServiceDefinition, channelTo(address));
}

export async function collect(stream: AsyncIterable<StreamResponse>): Promise<StreamResponse[]> {
  const out: StreamResponse[] = [];
  for await (const message of stream) out.push(message);
  return out;
}

/** The coordinator routes to healthy and degraded agents (degraded: e.g. CPU > 90 % on a busy machine). */
export function isRoutable(agent: AgentStatus | undefined): boolean {
  return agent?.status === 'healthy' || agent?.status === 'degraded';
}

/** Evicted or marked offline (a removed agent counts as offline). */
export function isOffline(agent: AgentStatus | undefined): boolean {
  return agent === undefined || agent.status === 'offline';
}

/** The coordinator's view of every agent. */
export async function agentStates(coordinatorAddress: string): Promise<Map<string, AgentStatus>> {
  const status = await coordinatorClient(coordinatorAddress).querySystemStatus({ includeAgents: true }, { signal: AbortSignal.timeout(2000) });
  return new Map(status.agents.map((a: AgentStatus) => [a.agentId, a]));
}

/** Runs the built `titan` CLI. */
export function runTitan(args: string[], env: Record<string, string> = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [BINS.titan, ...args], { cwd: repoRoot, env: { ...process.env, ...env }, timeout: 60_000 }, (error, stdout, stderr) =>
      resolve({ code: error ? Number((error as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    );
  });
}

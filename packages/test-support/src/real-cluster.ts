/**
 * A real coordinator and real agents started in-process on free ports, with a scripted engine
 * (deterministic tokens at a set pace) so tests are fast and exact. Moved here from the client
 * package, so that the client does not import the servers it talks to.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startCoordinator, type CoordinatorOptions, type RunningCoordinator } from '@titancompute/coordinator';
import { startAgent, type Engine, type EngineChunk, type GenerateRequest, type RunningAgent } from '@titancompute/agent';
import { TitanClient } from '@titancompute/client';
import { waitFor } from './wait-for.js';

/** Model served by the scripted engine. */
export const SCRIPTED_MODEL = 'scripted';

/** An engine that streams `word0 word1 …` (one token per word), `tokenDelayMs` apart. */
export function createScriptedEngine(options: { tokenDelayMs?: number; words?: number } = {}): Engine {
  return {
    name: 'scripted',
    models: [SCRIPTED_MODEL],
    async load() {},
    async close() {},
    async *generate(request: GenerateRequest): AsyncIterable<EngineChunk> {
      const total = options.words ?? 1000;
      const n = Math.min(total, request.maxTokens);
      for (let i = 0; i < n; i++) {
        await new Promise<void>((resolve, reject) => {
          if (request.signal.aborted) return reject(request.signal.reason);
          const t = setTimeout(resolve, options.tokenDelayMs ?? 2);
          request.signal.addEventListener(
            'abort',
            () => {
              clearTimeout(t);
              reject(request.signal.reason);
            },
            { once: true },
          );
        });
        yield { text: `word${i} `, tokens: 1, ...(i === n - 1 ? { finishReason: n < total ? 'length' : 'stop' } : {}) };
      }
    },
  };
}

/** What {@link startRealCluster} starts. */
export interface RealCluster {
  coordinator: RunningCoordinator;
  agents: RunningAgent[];
  client: TitanClient;
  /** Waits until the coordinator lists `n` routable (healthy or degraded) agents, up to 30 s. */
  waitForAgents(n: number): Promise<void>;
  stop(): Promise<void>;
}

/** One agent of {@link startRealCluster}. */
export interface RealAgentSpec {
  agentId: string;
  tokenDelayMs?: number;
  maxConcurrentJobs?: number;
  maxQueue?: number;
  /**
   * Advertise this host instead of 127.0.0.1 (e.g. 127.0.0.2: registered but unreachable). Such a
   * cluster plays an agent the coordinator can reach but the client cannot (a partition between
   * them), so the coordinator's own endpoint check is turned off.
   */
  publicHost?: string;
  /** An engine other than the scripted one. */
  engine?: Engine;
}

/** Options of {@link startRealCluster} beyond its agents. */
export interface RealClusterOptions {
  /** Coordinator options over the test defaults (e.g. `openAiMode`). */
  coordinator?: Partial<CoordinatorOptions>;
}

/**
 * Starts a coordinator (weights zeroed so ties go to the smallest agent id: deterministic
 * choices) and the given agents, and a client pointed at it.
 */
export async function startRealCluster(specs: RealAgentSpec[], options: RealClusterOptions = {}): Promise<RealCluster> {
  const dataDir = mkdtempSync(join(tmpdir(), 'titan-client-test-'));
  const coordinator = await startCoordinator({
    host: '127.0.0.1',
    port: 0,
    httpPort: 0,
    dataDir,
    logLevel: 'silent',
    heartbeatIntervalMs: 200,
    weights: { memory: 0, load: 0, rtt: 0, performance: 0 },
    ...(specs.some((s) => s.publicHost) ? { verifyAgentEndpoints: false } : {}),
    ...options.coordinator,
  });
  const agents: RunningAgent[] = [];
  for (const spec of specs) {
    agents.push(
      await startAgent({
        agentId: spec.agentId,
        host: '127.0.0.1',
        port: 0,
        httpPort: 0,
        coordinator: coordinator.address,
        joinToken: coordinator.joinToken,
        engine: spec.engine ?? createScriptedEngine({ tokenDelayMs: spec.tokenDelayMs ?? 2 }),
        maxConcurrentJobs: spec.maxConcurrentJobs ?? 4,
        maxQueue: spec.maxQueue ?? 0,
        heartbeatIntervalMs: 200,
        drainTimeoutMs: 500,
        logLevel: 'silent',
        ...(spec.publicHost ? { publicHost: spec.publicHost } : {}),
      }),
    );
  }
  const client = new TitanClient({ coordinator: coordinator.address, requestTimeoutMs: 5000 });
  const cluster: RealCluster = {
    coordinator,
    agents,
    client,
    async waitForAgents(n) {
      // Routable = healthy or degraded (a busy CI machine marks agents degraded); a loaded
      // machine can take several seconds to register them, so wait on the condition, up to 30 s.
      let last: Array<[string, string]> = [];
      await waitFor(
        async () => {
          const status = await client.status();
          last = status.agents.map((a) => [a.id, a.state]);
          return status.agents.filter((a) => a.state === 'healthy' || a.state === 'degraded').length >= n;
        },
        30_000,
        () => `${n} routable agents (last seen: ${JSON.stringify(last)})`,
        { intervalMs: 25, stopOnError: true },
      );
    },
    async stop() {
      client.close();
      for (const a of agents) await a.stop();
      await coordinator.stop();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
  await cluster.waitForAgents(specs.length);
  return cluster;
}

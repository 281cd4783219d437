import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createClientFactory, type Channel } from 'nice-grpc';
import { CoordinatorServiceDefinition, createProtoVersionClientMiddleware, createTitanChannel, type CoordinatorServiceClient } from '@titancompute/protocol';
import { waitFor as pollUntil } from '@titancompute/test-support/wait-for';
import { startCoordinator, type CoordinatorOptions, type RunningCoordinator } from '../coordinator.js';

/** A coordinator on 127.0.0.1 with free ports, a temp data dir and a client. */
export interface TestCoordinator {
  coordinator: RunningCoordinator;
  client: CoordinatorServiceClient;
  channel: Channel;
  dataDir: string;
  httpUrl: string;
  /** Stops the coordinator and closes the client (keeps the data dir unless `removeDir`). */
  stop(removeDir?: boolean): Promise<void>;
}

/** Makes a temp data directory. */
export function makeTempDir(): string {
  return mkdtempSync(join(tmpdir(), 'titan-coord-'));
}

/** Starts a coordinator for tests (silent logs, ports 0, temp data dir unless given). */
export async function startTestCoordinator(options: Partial<CoordinatorOptions> = {}): Promise<TestCoordinator> {
  const dataDir = options.dataDir ?? makeTempDir();
  const coordinator = await startCoordinator({
    host: '127.0.0.1',
    port: 0,
    httpPort: 0,
    logLevel: 'silent',
    joinToken: 'test-join-token',
    shutdownTimeoutMs: 1000,
    ...options,
    dataDir,
  });
  const channel = createTitanChannel(`127.0.0.1:${coordinator.port}`);
  const client = createClientFactory().use(createProtoVersionClientMiddleware()).create(CoordinatorServiceDefinition, channel);
  return {
    coordinator,
    client,
    channel,
    dataDir,
    httpUrl: `http://127.0.0.1:${coordinator.httpPort}`,
    async stop(removeDir = false) {
      channel.close();
      await coordinator.stop();
      if (removeDir) rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

/** Polls `check` until it returns true or `timeoutMs` passes; returns the elapsed ms (test-support's `waitFor`). */
export async function waitFor(check: () => boolean | Promise<boolean>, timeoutMs = 3000, stepMs = 20): Promise<number> {
  return (await pollUntil(check, timeoutMs, 'a condition', { intervalMs: stepMs, stopOnError: true })).elapsedMs;
}

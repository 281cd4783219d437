import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from '@jest/globals';
import { createClientFactory, type Channel } from 'nice-grpc';
import { createProtoVersionClientMiddleware, createTitanChannel, instanceManager as im } from '@titancompute/protocol';
import { createLogger } from '@titancompute/server-kit';
import { startInstanceManager, type RunningInstanceManager } from '@titancompute/instance-manager';
import { waitFor } from '../test-support/test-coordinator.js';
import { createInstanceFeed, type InstanceFeed, type InstanceFeedUpdate, safeUrl } from './instance-feed.js';

const logger = createLogger({ service: 'test', level: 'silent' });
const cleanups: (() => Promise<unknown> | unknown)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup();
  cleanups.length = 0;
});

async function startIm(options: { port?: number; dataDir?: string } = {}): Promise<RunningInstanceManager> {
  const manager = await startInstanceManager({
    host: '127.0.0.1',
    port: options.port ?? 0,
    ...(options.dataDir ? { storage: 'sqlite', dataDir: options.dataDir } : { storage: 'memory' }),
    logLevel: 'silent',
  });
  return manager;
}

function tryClient(address: string): { client: im.TryServiceClient; channel: Channel } {
  const channel = createTitanChannel(address);
  cleanups.push(() => channel.close());
  return { client: createClientFactory().use(createProtoVersionClientMiddleware()).create(im.TryServiceDefinition, channel), channel };
}

function watch(feed: InstanceFeed): InstanceFeedUpdate[] {
  const updates: InstanceFeedUpdate[] = [];
  feed.subscribe((u) => updates.push(u));
  return updates;
}

const events = (updates: InstanceFeedUpdate[]) => updates.flatMap((u) => (u.kind === 'event' ? [u.event] : []));

describe('instance feed', () => {
  it('relays events and the live tree, without metadata or credentials in URLs', async () => {
    const manager = await startIm();
    cleanups.push(() => manager.stop());
    const feed = createInstanceFeed({ address: manager.address, logger, refreshIntervalMs: 100 });
    cleanups.push(() => feed.stop());
    const updates = watch(feed);
    feed.start();
    feed.setWatched(true);
    await waitFor(() => feed.instances().connected, 5000);

    const { client } = tryClient(manager.address);
    const add = (id: string, type: im.InstanceType) =>
      client.tryAddInstance({ instance: { id, type, hostname: 'node-1', address: `10.0.0.1:${id.length}`, metadata: { password: 'metadata-secret' } } });
    expect((await add('coord-1', im.InstanceType.INSTANCE_TYPE_COORDINATOR)).success).toBe(true);
    expect((await add('agent-1', im.InstanceType.INSTANCE_TYPE_INFERENCE_AGENT)).success).toBe(true);
    expect((await client.tryAddChild({ parentId: 'coord-1', childId: 'agent-1' })).success).toBe(true);
    expect(
      (
        await client.tryAddService({
          instanceId: 'agent-1',
          service: { type: im.ServiceType.SERVICE_TYPE_VLLM_OPENAI_COMPATIBLE, port: 0, url: 'http://user:pw@10.0.0.1:8000/v1?key=abc' },
        })
      ).success,
    ).toBe(true);

    await waitFor(() => events(updates).length >= 4 && feed.instances().instances.find((i) => i.id === 'agent-1')?.services.length === 1, 5000);
    expect(events(updates).map((e) => `${e.type} ${e.instanceId}`)).toEqual(
      expect.arrayContaining(['ADDED coord-1', 'ADDED agent-1', 'SERVICE_ADDED agent-1']),
    );
    const sequences = events(updates).map((e) => e.sequence);
    expect(sequences).toEqual([...sequences].sort((a, b) => a - b));
    const service = events(updates).find((e) => e.type === 'SERVICE_ADDED')!.service!;
    expect(service).toEqual({ type: 'VLLM_OPENAI_COMPATIBLE', port: 0, url: 'http://10.0.0.1:8000/v1' });

    const tree = feed.instances();
    expect(tree).toMatchObject({ configured: true, address: manager.address, connected: true, error: null });
    expect(tree.instances.find((i) => i.id === 'agent-1')).toMatchObject({ type: 'INFERENCE_AGENT', parentId: 'coord-1', healthy: true, hostname: 'node-1' });
    expect(tree.instances.find((i) => i.id === 'coord-1')).toMatchObject({ type: 'COORDINATOR', parentId: '', childIds: ['agent-1'] });
    expect(JSON.stringify({ tree, updates })).not.toMatch(/metadata-secret|pw@|key=abc/);

    // A viewer resuming after the second event gets the rest, without a gap.
    const second = sequences[1]!;
    const after = feed.eventsAfter(second);
    expect(after.gap).toBeUndefined();
    expect(after.events.map((e) => e.sequence)).toEqual(sequences.filter((s) => s > second));
    expect(feed.eventsAfter(undefined).events.map((e) => e.sequence)).toEqual(sequences);
    // One from the future (the instance manager's sequence restarted): everything, with a gap.
    expect(feed.eventsAfter(sequences.at(-1)! + 100).gap?.reason).toMatch(/restarted/);
  });

  it('resumes from its last sequence when the instance manager comes back (SQLite keeps the sequence)', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'titan-feed-'));
    cleanups.push(() => rmSync(dataDir, { recursive: true, force: true }));
    let manager = await startIm({ dataDir });
    const port = manager.port;
    cleanups.push(() => manager.stop());
    const feed = createInstanceFeed({ address: manager.address, logger, retryInitialMs: 50, retryMaxMs: 200 });
    cleanups.push(() => feed.stop());
    const updates = watch(feed);
    feed.start();
    await waitFor(() => feed.instances().connected, 5000);
    const first = tryClient(manager.address).client;
    await first.tryAddInstance({ instance: { id: 'before', type: im.InstanceType.INSTANCE_TYPE_INFERENCE_AGENT, hostname: '', address: '', metadata: {} } });
    await waitFor(() => events(updates).length === 1, 5000);

    await manager.stop();
    await waitFor(() => !feed.instances().connected, 5000);
    expect(feed.instances().error).toBeTruthy();
    manager = await startIm({ port, dataDir });
    const second = tryClient(manager.address).client;
    await waitFor(() => feed.instances().connected, 10_000);
    await second.tryAddInstance({ instance: { id: 'after', type: im.InstanceType.INSTANCE_TYPE_INFERENCE_AGENT, hostname: '', address: '', metadata: {} } });
    await waitFor(() => events(updates).length === 2, 5000);
    expect(events(updates).map((e) => e.instanceId)).toEqual(['before', 'after']);
    expect(events(updates)[1]!.sequence).toBeGreaterThan(events(updates)[0]!.sequence);
    expect(updates.some((u) => u.kind === 'gap')).toBe(false);
  }, 30_000);

  it('reports a gap when the instance manager lost its events (memory storage restarted), then goes on live', async () => {
    let manager = await startIm();
    const port = manager.port;
    cleanups.push(() => manager.stop());
    const feed = createInstanceFeed({ address: manager.address, logger, retryInitialMs: 50, retryMaxMs: 200 });
    cleanups.push(() => feed.stop());
    const updates = watch(feed);
    feed.start();
    await waitFor(() => feed.instances().connected, 5000);
    const first = tryClient(manager.address).client;
    for (const id of ['a', 'b'])
      await first.tryAddInstance({ instance: { id, type: im.InstanceType.INSTANCE_TYPE_INFERENCE_AGENT, hostname: '', address: '', metadata: {} } });
    await waitFor(() => events(updates).length === 2, 5000);

    await manager.stop();
    manager = await startIm({ port });
    await waitFor(() => updates.some((u) => u.kind === 'gap') && feed.instances().connected, 10_000);
    const second = tryClient(manager.address).client;
    await second.tryAddInstance({ instance: { id: 'c', type: im.InstanceType.INSTANCE_TYPE_INFERENCE_AGENT, hostname: '', address: '', metadata: {} } });
    await waitFor(() => events(updates).length === 3, 5000);
    expect(events(updates).at(-1)!.instanceId).toBe('c');
    expect(feed.eventsAfter(undefined).events.map((e) => e.instanceId)).toEqual(['c']);
  }, 30_000);

  it('says why while the instance manager is unreachable', async () => {
    const feed = createInstanceFeed({ address: '127.0.0.1:1', logger, retryInitialMs: 50, retryMaxMs: 100, refreshIntervalMs: 50 });
    cleanups.push(() => feed.stop());
    feed.start();
    feed.setWatched(true);
    await waitFor(() => feed.instances().error !== null, 5000);
    expect(feed.instances()).toMatchObject({ configured: true, connected: false });
  });

  it('safeUrl drops user info, query and fragment', () => {
    expect(safeUrl('https://u:p@h.example:8443/v1?token=x#f')).toBe('https://h.example:8443/v1');
    expect(safeUrl('grpc://10.0.0.1:50052')).toBe('grpc://10.0.0.1:50052');
    expect(safeUrl('user:secret@host:1?x=1')).toBe('host:1');
    expect(safeUrl('')).toBe('');
  });
});

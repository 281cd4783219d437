import { afterEach, describe, expect, it } from '@jest/globals';
import { ConnectionError, InstanceManagerClient, type InstanceEvent } from './index.js';
import { startFakeInstanceManager, type FakeInstanceManager } from './test-support/fake-cluster.js';

let fake: FakeInstanceManager | undefined;
let client: InstanceManagerClient | undefined;
afterEach(async () => {
  client?.close();
  await fake?.stop();
  fake = undefined;
  client = undefined;
});

describe('InstanceManagerClient.watch', () => {
  it('yields events with string-union enums and resumes after a dropped connection from the last sequence, without gaps or repeats', async () => {
    fake = await startFakeInstanceManager();
    client = new InstanceManagerClient({ address: fake.address });
    const controller = new AbortController();
    const seen: InstanceEvent[] = [];
    const reconnects: number[] = [];
    const watching = (async () => {
      for await (const event of client!.watch({ signal: controller.signal, reconnectDelayMs: 20, onReconnect: (r) => reconnects.push(r.fromSequence) })) {
        seen.push(event);
        if (event.instanceId === 'b') {
          fake!.dropSubscriptions();
          fake!.emitAdded('c'); // happens while the client is disconnected
        }
        if (event.instanceId === 'd') controller.abort();
      }
    })();
    while (fake.subscriptions.length === 0) await new Promise((r) => setTimeout(r, 10));
    await new Promise((r) => setTimeout(r, 50));
    fake.emitAdded('a');
    fake.emitAdded('b');
    while (fake.subscriptions.length < 2) await new Promise((r) => setTimeout(r, 10));
    fake.emitAdded('d');
    await watching;
    expect(seen.map((e) => [e.instanceId, e.sequence, e.type, e.instanceType])).toEqual([
      ['a', 1, 'ADDED', 'INFERENCE_AGENT'],
      ['b', 2, 'ADDED', 'INFERENCE_AGENT'],
      ['c', 3, 'ADDED', 'INFERENCE_AGENT'],
      ['d', 4, 'ADDED', 'INFERENCE_AGENT'],
    ]);
    expect(fake.subscriptions).toEqual([0, 2]);
    expect(reconnects).toEqual([2]);
  });

  it('gives up with ConnectionError after maxReconnects when the server is gone', async () => {
    client = new InstanceManagerClient({ address: '127.0.0.1:1' });
    const error = await (async () => {
      for await (const _ of client!.watch({ maxReconnects: 1, reconnectDelayMs: 10 })) void _;
    })().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ConnectionError);
  });
});

import { EventEmitter } from 'node:events';
import { describe, expect, it } from '@jest/globals';
import { withPooledClient } from './pooled-client.js';

/** A pool client as node-postgres makes it: an EventEmitter with `release(err?)`. */
class FakeClient extends EventEmitter {
  released: (Error | boolean | undefined)[] = [];
  release(err?: Error | boolean) {
    this.released.push(err);
  }
}

describe('withPooledClient', () => {
  it('catches the connection error event while checked out (no throw), fails through fn, and destroys the broken client', async () => {
    const client = new FakeClient();
    const cut = new Error('Connection terminated unexpectedly');
    const run = withPooledClient(
      async () => client,
      async (c) => {
        // What pg does when the socket dies: the event on the client, and the query in flight rejects.
        c.emit('error', cut);
        throw cut;
      },
    );
    await expect(run).rejects.toBe(cut);
    expect(client.released).toEqual([cut]);
    // Back in the pool's hands: our listener is gone (an emit now would be the pool's to handle).
    expect(client.listenerCount('error')).toBe(0);
  });

  it('gives a healthy client back for reuse, whether fn returned or threw', async () => {
    const client = new FakeClient();
    await expect(
      withPooledClient(
        async () => client,
        async () => 42,
      ),
    ).resolves.toBe(42);
    await expect(
      withPooledClient(
        async () => client,
        async () => {
          throw new Error('duplicate key');
        },
      ),
    ).rejects.toThrow('duplicate key');
    expect(client.released).toEqual([undefined, undefined]);
    expect(client.listenerCount('error')).toBe(0);
  });
});

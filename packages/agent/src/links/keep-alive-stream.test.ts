import { describe, expect, it } from '@jest/globals';
import { ClientError, Status } from 'nice-grpc';
import { instanceManager } from '@titancompute/protocol';
import { createKeepAliveStream, type HealthStreamClient, isUnimplemented } from './keep-alive-stream.js';

const ALIVE = instanceManager.HealthStatus.HEALTH_STATUS_ALIVE;

/** A TryHealthCheckStream that answers each request after `delayMs` (never, for ids in `silent`). */
function fakeClient(options: { delayMs?: (id: string) => number; silent?: Set<string>; fail?: Error } = {}) {
  const state = { opened: 0 };
  const client: HealthStreamClient = {
    async *tryHealthCheckStream(requests) {
      state.opened += 1;
      if (options.fail) throw options.fail;
      for await (const r of requests as AsyncIterable<{ instanceId: string }>) {
        if (options.silent?.has(r.instanceId)) await new Promise(() => undefined);
        await new Promise((resolve) => setTimeout(resolve, options.delayMs?.(r.instanceId) ?? 0));
        yield { instanceId: r.instanceId, healthy: true, message: '', status: ALIVE };
      }
    },
  };
  return { client, state };
}

describe('keep-alive stream', () => {
  it('sends every check on one stream and hands out the answers in order', async () => {
    const { client, state } = fakeClient({ delayMs: (id) => (id === 'slow' ? 30 : 0) });
    const stream = createKeepAliveStream(client);
    const answers = await Promise.all(['slow', 'a', 'b', 'slow', 'c'].map((id) => stream.check(id, 1000)));
    expect(answers.map((a) => a.instanceId)).toEqual(['slow', 'a', 'b', 'slow', 'c']);
    expect((await stream.check('d', 1000)).instanceId).toBe('d');
    expect(state.opened).toBe(1);
    stream.close();
  });

  it('drops a stream whose answer is late (every check in flight fails) and opens a new one for the next check', async () => {
    const { client, state } = fakeClient({ silent: new Set(['stuck']) });
    const stream = createKeepAliveStream(client);
    expect((await stream.check('first', 1000)).instanceId).toBe('first');
    await expect(stream.check('stuck', 50)).rejects.toThrow(/no answer on the health-check stream within 50 ms/);
    expect((await stream.check('after', 1000)).instanceId).toBe('after');
    expect(state.opened).toBe(2);
    stream.close();
    await expect(stream.check('closed-then-reopened', 1000)).resolves.toMatchObject({ healthy: true });
    expect(state.opened).toBe(3);
    stream.close();
  });

  it('passes the failure of the stream on, and recognises an instance manager without the method', async () => {
    const unimplemented = new ClientError('/instance_manager.v1.TryService/TryHealthCheckStream', Status.UNIMPLEMENTED, 'not here');
    const { client } = fakeClient({ fail: unimplemented });
    const err = await createKeepAliveStream(client)
      .check('x', 1000)
      .catch((e: unknown) => e);
    expect(isUnimplemented(err)).toBe(true);
    expect(isUnimplemented(new ClientError('/p', Status.UNAVAILABLE, 'down'))).toBe(false);
  });
});

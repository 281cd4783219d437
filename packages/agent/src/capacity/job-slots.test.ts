import { describe, expect, it } from '@jest/globals';
import { Status } from 'nice-grpc-common';
import { CapacityError } from '../errors.js';
import { createJobSlots } from './job-slots.js';

describe('createJobSlots', () => {
  it('runs at most maxConcurrent jobs and queues the next ones in FIFO order', async () => {
    const slots = createJobSlots({ maxConcurrent: 1, maxQueue: 2 });
    const signal = new AbortController().signal;
    const first = await slots.acquire(signal);
    const order: string[] = [];
    const b = slots.acquire(signal).then((r) => {
      order.push('b');
      return r;
    });
    const c = slots.acquire(signal).then((r) => {
      order.push('c');
      return r;
    });
    expect([slots.running, slots.queued]).toEqual([1, 2]);
    first();
    (await b)();
    (await c)();
    expect(order).toEqual(['b', 'c']);
    expect([slots.running, slots.queued]).toEqual([0, 0]);
  });

  it('refuses with RESOURCE_EXHAUSTED beyond the queue', async () => {
    const slots = createJobSlots({ maxConcurrent: 1, maxQueue: 1 });
    const signal = new AbortController().signal;
    await slots.acquire(signal);
    void slots.acquire(signal);
    const err = await slots.acquire(signal).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(CapacityError);
    expect((err as CapacityError).grpcStatus).toBe(Status.RESOURCE_EXHAUSTED);
  });

  it('a cancelled waiter leaves the queue at once', async () => {
    const slots = createJobSlots({ maxConcurrent: 1, maxQueue: 1 });
    await slots.acquire(new AbortController().signal);
    const ac = new AbortController();
    const waiting = slots.acquire(ac.signal);
    expect(slots.queued).toBe(1);
    ac.abort();
    await expect(waiting).rejects.toBeDefined();
    expect(slots.queued).toBe(0);
  });

  it('releasing twice frees only one slot', async () => {
    const slots = createJobSlots({ maxConcurrent: 2, maxQueue: 0 });
    const release = await slots.acquire(new AbortController().signal);
    await slots.acquire(new AbortController().signal);
    release();
    release();
    expect(slots.running).toBe(1);
  });
});

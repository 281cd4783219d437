import { describe, expect, it } from '@jest/globals';
import { createJobEndWait } from './job-end-wait.js';

/** A whenAcked whose acks the test releases by hand. */
function acks() {
  const pending: (() => void)[] = [];
  return {
    whenAcked: () => new Promise<void>((resolve) => pending.push(resolve)),
    ackAll: async () => {
      for (const resolve of pending.splice(0)) resolve();
      await new Promise((r) => setImmediate(r));
    },
    get waiting() {
      return pending.length;
    },
  };
}

const settled = async (p: Promise<void>) => {
  let done = false;
  void p.then(() => (done = true));
  await new Promise((r) => setImmediate(r));
  return done;
};

describe('how long a finished job waits for the coordinator to know it ended', () => {
  it('waits for the ack when the freed slot is the only one the coordinator would count free', async () => {
    const a = acks();
    // One slot, now released: without this end acknowledged the coordinator counts it taken.
    const wait = createJobEndWait({ slots: { maxConcurrent: 1, running: 0, queued: 0 }, whenAcked: a.whenAcked });
    const p = wait();
    expect(await settled(p)).toBe(false);
    await a.ackAll();
    expect(await settled(p)).toBe(true);
  });

  it('answers at once when another slot is free as far as the coordinator knows', async () => {
    const a = acks();
    const wait = createJobEndWait({ slots: { maxConcurrent: 4, running: 1, queued: 0 }, whenAcked: a.whenAcked });
    expect(await settled(wait())).toBe(true);
    // The report still went out and is tracked: its ack is awaited in the background.
    expect(a.waiting).toBe(1);
  });

  it('counts the ends not acknowledged yet as taken: two jobs ending together on a two-slot agent, the second waits', async () => {
    const a = acks();
    const slots = { maxConcurrent: 2, running: 0, queued: 0 };
    const wait = createJobEndWait({ slots, whenAcked: a.whenAcked });
    // Both released; the coordinator still counts both until the update that reports them is acked.
    const first = wait();
    const second = wait();
    expect(await settled(first)).toBe(true);
    expect(await settled(second)).toBe(false);
    await a.ackAll();
    expect(await settled(second)).toBe(true);
    // Once acknowledged, a later end finds both slots free again.
    expect(await settled(wait())).toBe(true);
  });

  it('a queued job that takes the freed slot keeps the agent full: the end waits', async () => {
    const a = acks();
    const wait = createJobEndWait({ slots: { maxConcurrent: 2, running: 2, queued: 0 }, whenAcked: a.whenAcked });
    expect(await settled(wait())).toBe(false);
    await a.ackAll();
  });
});

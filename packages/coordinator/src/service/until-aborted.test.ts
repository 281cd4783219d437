import { describe, expect, it } from '@jest/globals';
import { untilAborted } from './until-aborted.js';

/** A source that yields what is pushed, and records whether it was told to return. */
function pushSource<T>() {
  const values: T[] = [];
  let wake: (() => void) | undefined;
  const state = { returned: false };
  const source: AsyncIterable<T> = {
    [Symbol.asyncIterator]: () => ({
      async next() {
        while (values.length === 0) await new Promise<void>((r) => (wake = r));
        return { value: values.shift()!, done: false };
      },
      async return() {
        state.returned = true;
        return { value: undefined, done: true };
      },
    }),
  };
  return {
    source,
    state,
    push(v: T) {
      values.push(v);
      wake?.();
    },
  };
}

describe('untilAborted', () => {
  it('passes values through and ends at once when any signal aborts, even while waiting for the next value', async () => {
    const src = pushSource<number>();
    const a = new AbortController();
    const b = new AbortController();
    const seen: number[] = [];
    const done = (async () => {
      for await (const v of untilAborted(src.source, [a.signal, b.signal])) seen.push(v);
    })();
    src.push(1);
    src.push(2);
    await new Promise((r) => setTimeout(r, 10));
    expect(seen).toEqual([1, 2]);
    b.abort();
    await done;
    expect(src.state.returned).toBe(true);
    // Values that arrive later are not delivered.
    src.push(3);
    await new Promise((r) => setTimeout(r, 10));
    expect(seen).toEqual([1, 2]);
  });

  it('ends with the source, and yields nothing when a signal is already aborted', async () => {
    async function* three() {
      yield* [1, 2, 3];
    }
    const out: number[] = [];
    for await (const v of untilAborted(three(), [new AbortController().signal])) out.push(v);
    expect(out).toEqual([1, 2, 3]);
    for await (const v of untilAborted(three(), [AbortSignal.abort()])) out.push(v);
    expect(out).toEqual([1, 2, 3]);
  });

  it('passes the error of a failing source on', async () => {
    async function* failing() {
      yield 1;
      throw new Error('stream reset');
    }
    const out: number[] = [];
    await expect(
      (async () => {
        for await (const v of untilAborted(failing(), [new AbortController().signal])) out.push(v);
      })(),
    ).rejects.toThrow('stream reset');
    expect(out).toEqual([1]);
  });
});

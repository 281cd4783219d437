import { describe, expect, it } from '@jest/globals';
import { waitFor } from './wait-for.js';

describe('waitFor', () => {
  it('returns the first answer that is not undefined/null/false, with 0 counting as an answer (an exit code)', async () => {
    const answers = [undefined, null, false, 0];
    let calls = 0;
    const { value } = await waitFor(() => answers[calls++], 5000, 'an answer', { intervalMs: 1 });
    expect(value).toBe(0);
    expect(calls).toBe(4);
  });

  it('retries a throwing probe and quotes its last error on timeout', async () => {
    let calls = 0;
    await expect(
      waitFor(
        () => {
          calls += 1;
          throw new Error(`refused ${calls}`);
        },
        50,
        'the service',
        { intervalMs: 5 },
      ),
    ).rejects.toThrow(/^timed out after 50 ms waiting for the service: Error: refused \d+$/);
    expect(calls).toBeGreaterThan(1);
  });

  it("with stopOnError, fails at once with the probe's own error", async () => {
    let calls = 0;
    const failing = () => {
      calls += 1;
      throw new Error('boom');
    };
    await expect(waitFor(failing, 10_000, 'x', { stopOnError: true })).rejects.toThrow('boom');
    expect(calls).toBe(1);
  });

  it('describes the last state seen, through a function called only on timeout', async () => {
    let seen = 0;
    await expect(
      waitFor(
        () => {
          seen += 1;
          return false;
        },
        30,
        () => `three agents (saw ${seen} polls)`,
        { intervalMs: 5 },
      ),
    ).rejects.toThrow(/waiting for three agents \(saw \d+ polls\)$/);
  });
});

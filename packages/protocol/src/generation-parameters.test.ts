import { describe, expect, it } from '@jest/globals';
import fc from 'fast-check';
import { parseGenerationParameterMap } from './generation-parameters.js';

describe('generation parameters contract', () => {
  it('parses numbers and stop strings, and names the first bad key with its schema message', () => {
    expect(parseGenerationParameterMap({ top_k: ' 40 ', seed: '1', top_p: '0.5', stop: '["\\n\\n"]', api: 'x' })).toEqual({
      ok: true,
      value: { topK: 40, seed: 1, topP: 0.5, stop: ['\n\n'] },
    });
    expect(parseGenerationParameterMap({ top_p: '7' })).toEqual({ ok: false, key: 'top_p', message: expect.stringContaining('(got "7")') });
    expect(parseGenerationParameterMap({ top_k: '1.5' })).toEqual({ ok: false, key: 'top_k', message: 'must be an integer (got "1.5")' });
    expect(parseGenerationParameterMap({ seed: '-1' })).toMatchObject({ ok: false, key: 'seed' });
    expect(parseGenerationParameterMap({ min_p: 'x' })).toEqual({ ok: false, key: 'min_p', message: 'must be a number (got "x")' });
  });

  it('accepts a value exactly when its range allows it, with the value Number gives it', () => {
    const text = fc.oneof(
      fc.constantFrom('', ' ', '1e3', '0x10', '+1', '-0', '00', '1.', '.5', '4294967295', '4294967296', `${'9'.repeat(400)}`, '2.0000001'),
      fc.double({ min: -5, max: 5, noNaN: true }).map(String),
      fc.integer({ min: -10, max: 200_000 }).map(String),
      fc.string({ maxLength: 4 }),
    );
    const keys = ['top_p', 'top_k', 'seed', 'repeat_penalty', 'presence_penalty', 'frequency_penalty', 'min_p'];
    fc.assert(
      fc.property(fc.constantFrom(...keys), text, fc.constantFrom('', ' ', '\t'), (key, value, pad) => {
        const raw = `${pad}${value}${pad}`;
        const parsed = parseGenerationParameterMap({ [key]: raw });
        if (raw === '') return expect(parsed).toEqual({ ok: true, value: {} });
        const trimmed = raw.trim();
        const n = Number(trimmed);
        const integer = key === 'top_k' || key === 'seed';
        const [min, max] = { top_p: [0, 1], top_k: [0, 100_000], seed: [0, 2 ** 32 - 1], repeat_penalty: [0, 10], min_p: [0, 1] }[key] ?? [-2, 2];
        const ok = (integer ? /^-?\d+$/ : /^-?\d+(\.\d+)?$/).test(trimmed) && Number.isFinite(n) && n >= (min as number) && n <= (max as number);
        expect(parsed.ok).toBe(ok);
        if (parsed.ok) expect(Object.values(parsed.value)).toEqual([n]);
      }),
      { numRuns: 3000 },
    );
  });
});

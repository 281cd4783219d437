import { describe, expect, it } from '@jest/globals';
import fc from 'fast-check';
import { RequestValidationError } from '../errors.js';
import { createGenerationValidator, generationRequestChecks } from './job-request-validation.js';
import type { GenerationJobRequest } from './job-runner.js';

const LIMITS = { maxPromptBytes: 64, maxTokensLimit: 512 };

/** A StreamInference request as the service hands it to the runner, fields often at or past their bounds. */
const request = (() => {
  const rare = <T>(usual: fc.Arbitrary<T>, odd: fc.Arbitrary<unknown>) =>
    fc.oneof({ weight: 12, arbitrary: usual as fc.Arbitrary<unknown> }, { weight: 1, arbitrary: odd });
  const text = (maxBytes: number) =>
    rare(
      fc.string({ maxLength: 8 }),
      fc.oneof(fc.constantFrom('x'.repeat(maxBytes), 'x'.repeat(maxBytes + 1), 'é'.repeat(maxBytes / 2), 'é'.repeat(maxBytes / 2 + 1)), fc.constant(42)),
    );
  const message = rare(
    fc.record({ role: rare(fc.constantFrom('system', 'user', 'assistant'), fc.constantFrom('tool', 'USER', '')), content: text(LIMITS.maxPromptBytes) }),
    fc.constantFrom(null, [], 'user: hi'),
  );
  return fc.record({
    sessionToken: fc.constant('token'),
    model: rare(fc.constantFrom('tiny', ''), fc.constantFrom('m'.repeat(256), 'm'.repeat(257), 7)),
    prompt: text(LIMITS.maxPromptBytes),
    messages: rare(fc.array(message, { maxLength: 3 }), fc.constantFrom(undefined, 'hi')),
    maxTokens: rare(fc.integer({ min: 0, max: LIMITS.maxTokensLimit }), fc.constantFrom(-1, LIMITS.maxTokensLimit + 1, 1.5, Number.NaN, 2 ** 53)),
    temperature: rare(fc.double({ min: 0, max: 2, noNaN: true }), fc.constantFrom(-0.1, 2.01, Number.NaN, Number.POSITIVE_INFINITY, '0.5')),
    options: fc.constant({}),
    stream: fc.constant(true),
  }) as unknown as fc.Arbitrary<GenerationJobRequest>;
})();

describe('the generation request checks in plain code', () => {
  const { schema, passes } = generationRequestChecks(LIMITS);

  it('agree with the schema on every request: none passes that the schema refuses, none is sent to the schema that it accepts', () => {
    let passed = 0;
    fc.assert(
      fc.property(request, (r) => {
        const fast = passes(r);
        expect(fast).toBe(schema.safeParse(r).success);
        if (fast) passed += 1;
      }),
      { numRuns: 3000 },
    );
    // Not a vacuous agreement: many of the requests were valid.
    expect(passed).toBeGreaterThan(300);
  });

  it('the validator still names the field the schema finds wrong', () => {
    const validate = createGenerationValidator(LIMITS);
    const base = {
      sessionToken: 't',
      model: 'tiny',
      prompt: 'hi',
      messages: [],
      maxTokens: 8,
      temperature: 0.5,
      options: {},
      stream: true,
    } as unknown as GenerationJobRequest;
    expect(() => validate(base)).not.toThrow();
    const fieldOf = (r: GenerationJobRequest) => {
      try {
        validate(r);
      } catch (err) {
        expect(err).toBeInstanceOf(RequestValidationError);
        return (err as RequestValidationError).message;
      }
      return undefined;
    };
    expect(fieldOf({ ...base, maxTokens: LIMITS.maxTokensLimit + 1 })).toMatch(/^max_tokens: /);
    expect(fieldOf({ ...base, temperature: 3 })).toMatch(/^temperature: /);
    expect(fieldOf({ ...base, prompt: '', messages: [{ role: 'tool', content: 'x' }] } as unknown as GenerationJobRequest)).toMatch(/^messages\[0\]\.role: /);
    expect(fieldOf({ ...base, prompt: 'x'.repeat(LIMITS.maxPromptBytes + 1) })).toMatch(/^prompt: /);
  });
});

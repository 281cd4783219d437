import { z } from 'zod';
import { RequestValidationError } from '../errors.js';

/** Generation parameters every engine understands, parsed from the string map of a request. */
export interface GenerationParameters {
  topP?: number;
  topK?: number;
  seed?: number;
  repeatPenalty?: number;
  presencePenalty?: number;
  frequencyPenalty?: number;
  minP?: number;
  stop?: string[];
}

const num = (min: number, max: number) =>
  z
    .string()
    .trim()
    .regex(/^-?\d+(\.\d+)?$/, 'must be a number')
    .transform(Number)
    .pipe(z.number().min(min).max(max));
const stopSchema = z.union([z.string().min(1), z.array(z.string().min(1)).max(16)]);
const int = (min: number, max: number) =>
  z
    .string()
    .trim()
    .regex(/^-?\d+$/, 'must be an integer')
    .transform(Number)
    .pipe(z.number().int().min(min).max(max));

const FIELDS = {
  top_p: ['topP', num(0, 1)],
  top_k: ['topK', int(0, 100_000)],
  seed: ['seed', int(0, 2 ** 32 - 1)],
  repeat_penalty: ['repeatPenalty', num(0, 10)],
  presence_penalty: ['presencePenalty', num(-2, 2)],
  frequency_penalty: ['frequencyPenalty', num(-2, 2)],
  min_p: ['minP', num(0, 1)],
} as const;

/** Keys of the parameters map the agent acts on (others are ignored, except engine-specific ones such as `api`). */
export const KNOWN_PARAMETERS = [...Object.keys(FIELDS), 'stop'] as const;

/**
 * Parses and validates the parameters map (`StreamRequest.options`). `stop` is a JSON array
 * of strings or one literal stop string. Throws {@link RequestValidationError} naming
 * `options.<key>`.
 *
 * @example
 * ```ts
 * parseGenerationParameters({ top_k: '40', stop: '["\\n\\n"]' }); // { topK: 40, stop: ['\n\n'] }
 * ```
 */
export function parseGenerationParameters(raw: Record<string, string>): GenerationParameters {
  const out: GenerationParameters = {};
  for (const [key, [field, schema]] of Object.entries(FIELDS)) {
    const value = raw[key];
    if (value === undefined || value === '') continue;
    const parsed = schema.safeParse(value);
    if (!parsed.success) {
      throw new RequestValidationError(
        `options.${key} is invalid: ${parsed.error.issues[0]?.message ?? 'bad value'} (got ${JSON.stringify(value)})`,
        `options.${key}`,
      );
    }
    (out as Record<string, number>)[field] = parsed.data;
  }
  const stop = raw.stop;
  if (stop !== undefined && stop !== '') {
    let list: unknown = stop;
    if (stop.trim().startsWith('[')) {
      try {
        list = JSON.parse(stop);
      } catch {
        throw new RequestValidationError('options.stop is invalid: not a JSON array of strings', 'options.stop');
      }
    }
    const parsed = stopSchema.safeParse(list);
    if (!parsed.success)
      throw new RequestValidationError('options.stop is invalid: expected a string or a JSON array of up to 16 non-empty strings', 'options.stop');
    out.stop = typeof parsed.data === 'string' ? [parsed.data] : parsed.data;
  }
  return out;
}

import { z } from 'zod';

/**
 * The contract of a request's `parameters` map (InferenceRequest.parameters, which the session
 * token binds and StreamRequest.options carries): the generation parameters every engine
 * understands, their wire spelling and their ranges. The coordinator checks them before it
 * reserves a slot or signs a token, the agent before it runs a job, with this one schema.
 *
 * @packageDocumentation
 */

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

const NUMBER = /^-?\d+(\.\d+)?$/;
const INTEGER = /^-?\d+$/;
const num = (min: number, max: number) => z.string().trim().regex(NUMBER, 'must be a number').transform(Number).pipe(z.number().min(min).max(max));
const int = (min: number, max: number) => z.string().trim().regex(INTEGER, 'must be an integer').transform(Number).pipe(z.number().int().min(min).max(max));
const stopSchema = z.union([z.string().min(1), z.array(z.string().min(1)).max(16)]);

/** A numeric field: its name in {@link GenerationParameters}, its schema, and the same checks in plain code (the hot path). */
interface NumericField {
  field: keyof Omit<GenerationParameters, 'stop'>;
  schema: z.ZodType<number, string>;
  integer: boolean;
  min: number;
  max: number;
}
const numeric = (field: NumericField['field'], integer: boolean, min: number, max: number): NumericField => ({
  field,
  schema: integer ? int(min, max) : num(min, max),
  integer,
  min,
  max,
});

const FIELDS: Readonly<Record<string, NumericField>> = {
  top_p: numeric('topP', false, 0, 1),
  top_k: numeric('topK', true, 0, 100_000),
  seed: numeric('seed', true, 0, 2 ** 32 - 1),
  repeat_penalty: numeric('repeatPenalty', false, 0, 10),
  presence_penalty: numeric('presencePenalty', false, -2, 2),
  frequency_penalty: numeric('frequencyPenalty', false, -2, 2),
  min_p: numeric('minP', false, 0, 1),
};
const FIELD_ENTRIES = Object.entries(FIELDS);

/**
 * The value of a numeric field when it passes its schema's checks, computed without the schema
 * (every request parses its parameters on the agent's hot path); undefined when it does not, and
 * then the schema says why.
 */
function fastNumeric(f: NumericField, text: string): number | undefined {
  const trimmed = text.trim();
  if (!(f.integer ? INTEGER : NUMBER).test(trimmed)) return undefined;
  const n = Number(trimmed);
  return Number.isFinite(n) && n >= f.min && n <= f.max && (!f.integer || Number.isInteger(n)) ? n : undefined;
}

/** Keys of the parameters map engines act on (others pass through untouched, e.g. an engine's own `api`). */
export const KNOWN_GENERATION_PARAMETERS = [...Object.keys(FIELDS), 'stop'] as const;

/** The outcome of {@link parseGenerationParameterMap}: the parameters, or the first bad key and what is wrong with its value. */
export type GenerationParametersResult = { ok: true; value: GenerationParameters } | { ok: false; key: string; message: string };

/**
 * Parses and validates a parameters map. Empty values count as unset; `stop` is a JSON array of
 * up to 16 non-empty strings or one literal stop string; unknown keys are ignored. Never throws:
 * each side names the bad key its own way (`parameters.top_p` on the coordinator,
 * `options.top_p` on the agent).
 *
 * @example
 * ```ts
 * parseGenerationParameterMap({ top_k: '40', stop: '["\\n\\n"]' }); // { ok: true, value: { topK: 40, stop: ['\n\n'] } }
 * parseGenerationParameterMap({ top_p: '7' }); // { ok: false, key: 'top_p', message: 'Too big: expected number to be <=1 (got "7")' }
 * ```
 */
export function parseGenerationParameterMap(raw: Readonly<Record<string, string>>): GenerationParametersResult {
  const value: GenerationParameters = {};
  for (const [key, f] of FIELD_ENTRIES) {
    const text = raw[key];
    if (text === undefined || text === '') continue;
    const fast = fastNumeric(f, text);
    if (fast !== undefined) {
      value[f.field] = fast;
      continue;
    }
    const parsed = f.schema.safeParse(text);
    if (!parsed.success) return { ok: false, key, message: `${parsed.error.issues[0]?.message ?? 'bad value'} (got ${JSON.stringify(text)})` };
    value[f.field] = parsed.data;
  }
  const stop = raw.stop;
  if (stop !== undefined && stop !== '') {
    let list: unknown = stop;
    if (stop.trim().startsWith('[')) {
      try {
        list = JSON.parse(stop);
      } catch {
        return { ok: false, key: 'stop', message: 'not a JSON array of strings' };
      }
    }
    const parsed = stopSchema.safeParse(list);
    if (!parsed.success) return { ok: false, key: 'stop', message: 'expected a string or a JSON array of up to 16 non-empty strings' };
    value.stop = typeof parsed.data === 'string' ? [parsed.data] : parsed.data;
  }
  return { ok: true, value };
}

import { z } from 'zod';
import { instanceManager } from '@titancompute/protocol';
import { ValidationError } from '../errors.js';

const { InstanceType, ServiceType } = instanceManager;

/** Largest integer accepted in a metric (2^53 − 1). */
export const MAX_METRIC = Number.MAX_SAFE_INTEGER;
/** Metadata limits (see the proto). */
export const METADATA_LIMITS = { entries: 64, keyLength: 128, valueLength: 1024 } as const;
/** A timestamp may be at most this far in the future (clock skew), in ms. */
const FUTURE_SLACK_MS = 24 * 3_600_000;

/** Instance ids: 1-128 characters of [A-Za-z0-9._:-]. */
export const instanceIdSchema = z
  .string()
  .min(1, 'required (1-128 characters of [A-Za-z0-9._:-])')
  .max(128, 'at most 128 characters')
  .regex(/^[A-Za-z0-9._:-]+$/, 'only [A-Za-z0-9._:-] allowed');

const knownEnum = (values: Record<string, string | number>, name: string, allowUnspecified: boolean) => {
  const known = new Set(Object.values(values).filter((v): v is number => typeof v === 'number' && v >= 0));
  return z.number().refine((v) => known.has(v) && (allowUnspecified || v !== 0), {
    message: allowUnspecified ? `unknown ${name} value` : `must be a known ${name}, not UNSPECIFIED`,
  });
};

/** Instance types; UNSPECIFIED refused. */
export const instanceTypeSchema = knownEnum(InstanceType, 'instance type', false);
/** Instance types where UNSPECIFIED means "any". */
export const instanceTypeFilterSchema = knownEnum(InstanceType, 'instance type', true);
/** Service types; UNSPECIFIED refused. */
export const serviceTypeSchema = knownEnum(ServiceType, 'service type', false);
/** Service types where UNSPECIFIED means "any". */
export const serviceTypeFilterSchema = knownEnum(ServiceType, 'service type', true);

const count = z.number().int('must be an integer').min(0, 'must not be negative').max(MAX_METRIC, 'is absurdly large');
const timestamp = count.refine((v) => v <= Date.now() + FUTURE_SLACK_MS, 'is more than a day in the future');
const percent = z.number().min(0, 'must be 0-100').max(100, 'must be 0-100');

/** An instance as TryAddInstance receives it. */
export const instanceSchema = z.object(
  {
    id: instanceIdSchema,
    type: instanceTypeSchema,
    hostname: z.string().max(255, 'at most 255 characters'),
    address: z.string().max(2048, 'at most 2048 characters'),
    metadata: z
      .record(
        z.string().min(1, 'keys must not be empty').max(METADATA_LIMITS.keyLength, `keys at most ${METADATA_LIMITS.keyLength} characters`),
        z.string().max(METADATA_LIMITS.valueLength, `values at most ${METADATA_LIMITS.valueLength} characters`),
      )
      .refine((m) => Object.keys(m).length <= METADATA_LIMITS.entries, `at most ${METADATA_LIMITS.entries} entries`),
  },
  { error: 'required' },
);

/** A service as TryAddService receives it. */
export const serviceSchema = z
  .object(
    {
      type: serviceTypeSchema,
      port: z.number().int().min(0, 'must be 1-65535 (or 0 with url)').max(65535, 'must be 1-65535 (or 0 with url)'),
      url: z
        .string()
        .max(2048, 'at most 2048 characters')
        .refine((u) => u === '' || URL.canParse(u), 'must be an absolute URL'),
    },
    { error: 'required' },
  )
  .refine((s) => s.port > 0 || s.url !== '', { message: 'needs a port (1-65535) or a url', path: ['port'] });

/** Proxy metrics. */
export const proxyMetricsSchema = z.object(
  {
    activeConnections: count,
    totalConnections: count,
    bytesSent: count,
    bytesReceived: count,
    timestampMs: timestamp,
  },
  { error: 'required' },
);

const usedWithinTotal = <T extends { usedMemoryBytes: number; totalMemoryBytes: number }>(m: T) => m.usedMemoryBytes <= m.totalMemoryBytes;

/** System metrics; cpu_percent may exceed 100 on multi-core hosts (100 per core, up to 1024 cores). */
export const systemMetricsSchema = z
  .object(
    {
      usedMemoryBytes: count,
      totalMemoryBytes: count,
      cpuPercent: z.number().min(0, 'must not be negative').max(102_400, 'at most 100 per core (1024 cores)'),
      timestampMs: timestamp,
    },
    { error: 'required' },
  )
  .refine(usedWithinTotal, { message: 'must not exceed total_memory_bytes', path: ['usedMemoryBytes'] });

/** GPU metrics. */
export const gpuMetricsSchema = z
  .object(
    {
      usedMemoryBytes: count,
      totalMemoryBytes: count,
      utilizationPercent: percent,
      timestampMs: timestamp,
      devices: z
        .array(
          z
            .object({
              index: z.number().int().min(0, 'must not be negative').max(1023, 'at most 1023'),
              name: z.string().max(256, 'at most 256 characters'),
              usedMemoryBytes: count,
              totalMemoryBytes: count,
              utilizationPercent: percent,
            })
            .refine(usedWithinTotal, { message: 'must not exceed total_memory_bytes', path: ['usedMemoryBytes'] }),
        )
        .max(64, 'at most 64 devices'),
    },
    { error: 'required' },
  )
  .refine(usedWithinTotal, { message: 'must not exceed total_memory_bytes', path: ['usedMemoryBytes'] });

/** LLM metrics. */
export const llmMetricsSchema = z.object({ requestCount: count, tokensReceived: count, tokensSent: count, timestampMs: timestamp }, { error: 'required' });

/** Host stats (StatsService). */
export const statsSchema = z
  .object({ usedMemoryBytes: count, totalMemoryBytes: count, timestampMs: timestamp }, { error: 'required' })
  .refine(usedWithinTotal, { message: 'must not exceed total_memory_bytes', path: ['usedMemoryBytes'] });

/** Hostnames of StatsService: 1-255 characters, no whitespace or control characters. */
export const hostnameSchema = z
  .string()
  .min(1, 'required')
  .max(255, 'at most 255 characters')
  .regex(/^[^\s\p{Cc}]+$/u, 'must not contain whitespace or control characters');

const snake = (key: string) => key.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);

/**
 * Parses `value` with `schema`, or throws {@link ValidationError} whose message names the
 * field in proto spelling, e.g. `instance.id: only [A-Za-z0-9._:-] allowed`.
 */
export function validate<T>(schema: z.ZodType<T>, value: unknown, field: string): T {
  const result = schema.safeParse(value);
  if (result.success) return result.data;
  const issue = result.error.issues[0]!;
  const path = [field, ...issue.path.map((p) => (typeof p === 'number' ? `[${p}]` : snake(String(p))))].filter(Boolean).join('.').replace(/\.\[/g, '[');
  const message = issue.code === 'invalid_type' && value === undefined ? 'required' : issue.message;
  throw new ValidationError(`${path}: ${message}`, { field: path });
}

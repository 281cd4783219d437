import { isIPv4, isIPv6 } from 'node:net';
import { z } from 'zod';
import {
  MAX_REPORTED_PREFIX_BLOCKS,
  PREFIX_BLOCK_HASH_PATTERN,
  type AgentRegistration,
  type DeregistrationRequest,
  type HealthUpdate,
} from '@titancompute/protocol';
import { InvalidRequestError } from '../errors.js';
import { MAX_CREDENTIAL_LENGTH, MIN_CREDENTIAL_LENGTH } from './identity-store.js';

/** agent_id: 1–128 characters of `[A-Za-z0-9._:-]`. */
export const AGENT_ID_PATTERN = /^[A-Za-z0-9._:-]{1,128}$/;
/** Longest endpoint host (a DNS name's limit). */
export const MAX_ENDPOINT_HOST_LENGTH = 253;

/** Bounds of health values: anything outside is INVALID_ARGUMENT and never stored. */
export const HEALTH_LIMITS = {
  /** running_jobs, queued_jobs. */
  maxJobs: 100_000,
  /** Memory values (MB): 2^50 MB is far beyond any machine. */
  maxMemoryMb: 2 ** 50,
  /** cpu_percent (100 per core). */
  maxCpuPercent: 100_000,
  /** rtt_ms: one hour. */
  maxRttMs: 3_600_000,
  /** JobOutcome.tokens_per_second. */
  maxTokensPerSecond: 1_000_000,
  /** JobOutcome.time_to_first_token_ms: one day. */
  maxTimeToFirstTokenMs: 86_400_000,
  /** JobOutcome.tokens_generated. */
  maxTokensGenerated: 1_000_000_000,
  /** Entries of each job id list (active, started, rejected, completed). */
  maxJobIds: 100_000,
  /** Length of a job id. */
  maxJobIdLength: 128,
  /** GPUs per agent. */
  maxGpus: 256,
  /** prefix_cache.block_hashes entries (the protocol's MAX_REPORTED_PREFIX_BLOCKS). */
  maxPrefixBlocks: MAX_REPORTED_PREFIX_BLOCKS,
  /** prefix_cache cells (tokens of KV cache): 2^40. */
  maxCacheCells: 2 ** 40,
  /** prefix_cache sequences. */
  maxCacheSequences: 100_000,
} as const;

/** Whether `endpoint` is `host:port` with a hostname, IPv4 or `[IPv6]` host (≤ 253 chars) and a port 1–65535. */
export function isValidEndpoint(endpoint: string): boolean {
  let host: string;
  let port: string;
  const v6 = /^\[([^\]]+)\]:(\d{1,5})$/.exec(endpoint);
  if (v6) {
    if (!isIPv6(v6[1]!)) return false;
    host = v6[1]!;
    port = v6[2]!;
  } else {
    const m = /^([^:[\]]+):(\d{1,5})$/.exec(endpoint);
    if (!m) return false;
    host = m[1]!;
    port = m[2]!;
    const hostname = host.endsWith('.') ? host.slice(0, -1) : host;
    const label = /^[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?$/;
    if (!isIPv4(host) && !hostname.split('.').every((l) => label.test(l))) return false;
  }
  const n = Number(port);
  return host.length <= MAX_ENDPOINT_HOST_LENGTH && n >= 1 && n <= 65_535;
}

const agentId = z.string().regex(AGENT_ID_PATTERN, 'must be 1-128 characters of A-Z a-z 0-9 . _ : -');
const credential = z
  .string()
  .min(1, `is required: the agent's own secret (at least ${MIN_CREDENTIAL_LENGTH} characters, kept in its data dir); upgrade the agent`)
  .min(MIN_CREDENTIAL_LENGTH, `must be at least ${MIN_CREDENTIAL_LENGTH} characters`)
  .max(MAX_CREDENTIAL_LENGTH, `must be at most ${MAX_CREDENTIAL_LENGTH} characters`)
  .regex(/^[\x21-\x7e]+$/, 'must be printable ASCII without spaces');
const count = (max: number) => z.number().int('must be an integer').min(0, 'must not be negative').max(max, `must be at most ${max}`);
const finite = (min: number, max: number) => z.number().min(min, `must be at least ${min}`).max(max, `must be at most ${max}`);
const memoryMb = count(HEALTH_LIMITS.maxMemoryMb);
const jobId = z
  .string()
  .min(1, 'entries must not be empty')
  .max(HEALTH_LIMITS.maxJobIdLength, `entries must be at most ${HEALTH_LIMITS.maxJobIdLength} characters`);
const jobIds = z.array(jobId).max(HEALTH_LIMITS.maxJobIds, `must list at most ${HEALTH_LIMITS.maxJobIds} jobs`);
const gpu = z.object({
  index: count(1023),
  uuid: z.string().max(128, 'must be at most 128 characters'),
  name: z.string().max(256, 'must be at most 256 characters'),
  memoryTotalMb: memoryMb,
  memoryUsedMb: memoryMb,
  memoryFreeMb: memoryMb,
  utilizationPercent: finite(0, 100).optional(),
  temperatureC: finite(-273, 1000).optional(),
  powerDrawW: finite(0, 1_000_000).optional(),
});
const gpus = z.array(gpu).max(HEALTH_LIMITS.maxGpus, `must list at most ${HEALTH_LIMITS.maxGpus} GPUs`);
const prefixCache = z
  .object({
    blockHashes: z
      .array(z.string().regex(PREFIX_BLOCK_HASH_PATTERN, 'entries must be 16 lowercase hex digits'))
      .max(HEALTH_LIMITS.maxPrefixBlocks, `must list at most ${HEALTH_LIMITS.maxPrefixBlocks} hashes`),
    usedCells: count(HEALTH_LIMITS.maxCacheCells),
    totalCells: count(HEALTH_LIMITS.maxCacheCells),
    usedSequences: count(HEALTH_LIMITS.maxCacheSequences),
    totalSequences: count(HEALTH_LIMITS.maxCacheSequences),
  })
  .refine((c) => c.usedCells <= c.totalCells, { message: 'must not exceed total_cells', path: ['usedCells'] })
  .refine((c) => c.usedSequences <= c.totalSequences, { message: 'must not exceed total_sequences', path: ['usedSequences'] });

const registrationSchema = z
  .object({
    agentId,
    endpoint: z.string().refine(isValidEndpoint, 'must be host:port (a hostname, IPv4 or [IPv6] of at most 253 characters, port 1-65535)'),
    totalVramMb: memoryMb,
    totalRamMb: memoryMb,
    maxJobs: z.number().int('must be an integer').min(1, 'must be at least 1').max(HEALTH_LIMITS.maxJobs, `must be at most ${HEALTH_LIMITS.maxJobs}`),
    supportedModels: z
      .array(z.string().min(1, 'entries must not be empty').max(256, 'entries must be at most 256 characters'))
      .max(1000, 'must list at most 1000 models'),
    maxQueue: count(1_000_000),
    engine: z.string().max(64, 'must be at most 64 characters'),
    capabilities: z
      .record(z.string().max(128, 'keys must be at most 128 characters'), z.string().max(1024, 'values must be at most 1024 characters'))
      .refine((c) => Object.keys(c).length <= 64, 'must have at most 64 entries'),
    gpus,
    agentCredential: credential,
    httpEndpoint: z.string().refine((e) => e === '' || isValidEndpoint(e), 'must be empty or host:port'),
  })
  .refine((r) => r.httpEndpoint === '' || endpointHost(r.httpEndpoint) === endpointHost(r.endpoint), {
    // The coordinator relays OpenAI requests to this address: it may only name another port of the
    // agent's own (verified) host, so a registration cannot point the coordinator at another machine.
    message: 'must be on the same host as endpoint',
    path: ['httpEndpoint'],
  });

/** The host of a `host:port` endpoint (without brackets for IPv6), lower-cased. */
export function endpointHost(endpoint: string): string {
  const i = endpoint.lastIndexOf(':');
  return endpoint
    .slice(0, i)
    .replace(/^\[|\]$/g, '')
    .toLowerCase();
}

const healthSchema = z.object({
  agentId,
  freeVramMb: memoryMb,
  freeRamMb: memoryMb,
  totalRamMb: memoryMb,
  runningJobs: count(HEALTH_LIMITS.maxJobs),
  queuedJobs: count(HEALTH_LIMITS.maxJobs),
  cpuPercent: finite(0, HEALTH_LIMITS.maxCpuPercent),
  rttMs: finite(0, HEALTH_LIMITS.maxRttMs),
  timestamp: count(Number.MAX_SAFE_INTEGER),
  gpus,
  activeJobIds: jobIds,
  startedJobIds: jobIds,
  rejectedJobIds: jobIds,
  completedJobs: z
    .array(
      z.object({
        jobId,
        tokensGenerated: count(HEALTH_LIMITS.maxTokensGenerated),
        // Charged to the job's API key with tokens_generated: never negative or absurd.
        promptTokens: count(HEALTH_LIMITS.maxTokensGenerated),
        timeToFirstTokenMs: finite(0, HEALTH_LIMITS.maxTimeToFirstTokenMs),
        tokensPerSecond: finite(0, HEALTH_LIMITS.maxTokensPerSecond),
        error: z.string().max(128, 'must be at most 128 characters'),
      }),
    )
    .max(HEALTH_LIMITS.maxJobIds, `must list at most ${HEALTH_LIMITS.maxJobIds} jobs`),
  prefixCache: prefixCache.optional(),
});

const deregistrationSchema = z.object({
  agentId,
  reason: z.string().max(1024, 'must be at most 1024 characters'),
  agentCredential: credential,
});

const snake = (key: string) => key.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);

/** `completed_jobs[0].tokens_per_second` from a zod issue path. */
function fieldOf(path: readonly PropertyKey[]): string {
  let out = '';
  for (const p of path) out += typeof p === 'number' ? `[${p}]` : `${out ? '.' : ''}${snake(String(p))}`;
  return out || 'request';
}

function parser<T>(schema: z.ZodType<T>) {
  return (input: unknown): T => {
    const parsed = schema.safeParse(input);
    if (parsed.success) return parsed.data;
    const issue = parsed.error.issues[0];
    const message =
      issue?.code === 'invalid_type'
        ? issue.expected === 'number'
          ? 'must be a finite number'
          : `must be a ${issue.expected}`
        : (issue?.message ?? 'is invalid');
    throw new InvalidRequestError(fieldOf(issue?.path ?? []), message);
  };
}

/**
 * Validates a RegisterAgent request (agent_id, endpoint, capacity, models, GPUs, credential);
 * throws {@link InvalidRequestError} (INVALID_ARGUMENT) naming the first bad field.
 */
export const validateRegistration: (registration: AgentRegistration) => unknown = parser(registrationSchema);

/**
 * Validates a HealthUpdate: every number non-negative (temperatures aside), finite and
 * bounded ({@link HEALTH_LIMITS}), prefix-cache reports bounded with well-formed hashes; throws
 * {@link InvalidRequestError} naming the field, e.g. `running_jobs`,
 * `completed_jobs[0].tokens_per_second` or `prefix_cache.block_hashes[3]`. The credential is checked apart
 * (it is only required on a stream's first update).
 */
export const validateHealthUpdate = (update: HealthUpdate): unknown =>
  // Every agent sends one every few seconds: the schema's checks run in plain code first, and
  // only an update they do not pass goes through the schema (which names what is wrong).
  healthUpdatePasses(update) ? update : validateHealthUpdateBySchema(update);

/**
 * {@link validateHealthUpdate} through the schema alone (what it falls back to when
 * {@link healthUpdatePasses} is false); the property test holds the two to each other.
 */
export const validateHealthUpdateBySchema: (update: HealthUpdate) => unknown = parser(healthSchema);

const isCount = (x: unknown, max: number): boolean => Number.isSafeInteger(x) && (x as number) >= 0 && (x as number) <= max;
const isWithin = (x: unknown, min: number, max: number): boolean => typeof x === 'number' && x >= min && x <= max;
const isMemoryMb = (x: unknown): boolean => isCount(x, HEALTH_LIMITS.maxMemoryMb);
const isShortString = (x: unknown, max: number): boolean => typeof x === 'string' && x.length <= max;
const isJobIdList = (xs: unknown): boolean => {
  if (!Array.isArray(xs) || xs.length > HEALTH_LIMITS.maxJobIds) return false;
  for (const x of xs as unknown[]) if (typeof x !== 'string' || x.length === 0 || x.length > HEALTH_LIMITS.maxJobIdLength) return false;
  return true;
};

/**
 * The health schema's checks in plain code, at least as strict (a property test holds it to the
 * schema): true only for an update the schema accepts. False says nothing about what is wrong.
 */
export function healthUpdatePasses(u: HealthUpdate): boolean {
  if (typeof u !== 'object' || u === null) return false;
  if (typeof u.agentId !== 'string' || !AGENT_ID_PATTERN.test(u.agentId)) return false;
  if (!isMemoryMb(u.freeVramMb) || !isMemoryMb(u.freeRamMb) || !isMemoryMb(u.totalRamMb)) return false;
  if (!isCount(u.runningJobs, HEALTH_LIMITS.maxJobs) || !isCount(u.queuedJobs, HEALTH_LIMITS.maxJobs)) return false;
  if (!isWithin(u.cpuPercent, 0, HEALTH_LIMITS.maxCpuPercent) || !isWithin(u.rttMs, 0, HEALTH_LIMITS.maxRttMs)) return false;
  if (!isCount(u.timestamp, Number.MAX_SAFE_INTEGER)) return false;
  if (!Array.isArray(u.gpus) || u.gpus.length > HEALTH_LIMITS.maxGpus) return false;
  for (const g of u.gpus as unknown[]) {
    if (typeof g !== 'object' || g === null) return false;
    const gpu = g as Record<string, unknown>;
    if (!isCount(gpu.index, 1023) || !isShortString(gpu.uuid, 128) || !isShortString(gpu.name, 256)) return false;
    if (!isMemoryMb(gpu.memoryTotalMb) || !isMemoryMb(gpu.memoryUsedMb) || !isMemoryMb(gpu.memoryFreeMb)) return false;
    if (gpu.utilizationPercent !== undefined && !isWithin(gpu.utilizationPercent, 0, 100)) return false;
    if (gpu.temperatureC !== undefined && !isWithin(gpu.temperatureC, -273, 1000)) return false;
    if (gpu.powerDrawW !== undefined && !isWithin(gpu.powerDrawW, 0, 1_000_000)) return false;
  }
  if (!isJobIdList(u.activeJobIds) || !isJobIdList(u.startedJobIds) || !isJobIdList(u.rejectedJobIds)) return false;
  if (!Array.isArray(u.completedJobs) || u.completedJobs.length > HEALTH_LIMITS.maxJobIds) return false;
  for (const o of u.completedJobs as unknown[]) {
    if (typeof o !== 'object' || o === null) return false;
    const outcome = o as Record<string, unknown>;
    if (typeof outcome.jobId !== 'string' || outcome.jobId.length === 0 || outcome.jobId.length > HEALTH_LIMITS.maxJobIdLength) return false;
    if (!isCount(outcome.tokensGenerated, HEALTH_LIMITS.maxTokensGenerated) || !isCount(outcome.promptTokens, HEALTH_LIMITS.maxTokensGenerated)) return false;
    if (!isWithin(outcome.timeToFirstTokenMs, 0, HEALTH_LIMITS.maxTimeToFirstTokenMs)) return false;
    if (!isWithin(outcome.tokensPerSecond, 0, HEALTH_LIMITS.maxTokensPerSecond) || !isShortString(outcome.error, 128)) return false;
  }
  const cache: unknown = u.prefixCache;
  if (cache === undefined) return true;
  if (typeof cache !== 'object' || cache === null) return false;
  const c = cache as Record<string, unknown>;
  if (!Array.isArray(c.blockHashes) || c.blockHashes.length > HEALTH_LIMITS.maxPrefixBlocks) return false;
  for (const h of c.blockHashes as unknown[]) if (typeof h !== 'string' || !PREFIX_BLOCK_HASH_PATTERN.test(h)) return false;
  return (
    isCount(c.usedCells, HEALTH_LIMITS.maxCacheCells) &&
    isCount(c.totalCells, HEALTH_LIMITS.maxCacheCells) &&
    isCount(c.usedSequences, HEALTH_LIMITS.maxCacheSequences) &&
    isCount(c.totalSequences, HEALTH_LIMITS.maxCacheSequences) &&
    (c.usedCells as number) <= (c.totalCells as number) &&
    (c.usedSequences as number) <= (c.totalSequences as number)
  );
}

/** Validates a DeregisterAgent request; throws {@link InvalidRequestError} naming the field. */
export const validateDeregistration: (request: DeregistrationRequest) => unknown = parser(deregistrationSchema);

/** Validates a credential alone (a health stream's first update); `field` names it in the error. */
export const validateCredential: (credentialValue: string) => string = (() => {
  const parse = parser(z.object({ agentCredential: credential }));
  return (value: string) => parse({ agentCredential: value }).agentCredential;
})();

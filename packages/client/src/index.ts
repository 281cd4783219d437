/**
 * `@titancompute/client`: the TitanCompute SDK (and the `titan` CLI).
 *
 * The client asks the coordinator for the best agent and a short-lived session token, then
 * streams tokens straight from that agent ("zero-proxy"). It fails over to another agent
 * while no token has been delivered, honours AbortSignal and deadlines, and throws typed
 * errors ({@link TitanError} subclasses) — never raw gRPC errors.
 *
 * @example
 * ```ts
 * import { TitanClient, NoAgentsError } from '@titancompute/client';
 *
 * // apiKey defaults to the TITAN_API_KEY environment variable (needed when the coordinator requires keys)
 * const client = new TitanClient({ coordinator: '127.0.0.1:50051', apiKey: process.env.TITAN_API_KEY });
 * try {
 *   for await (const chunk of client.generate({ model: 'llama-2-tiny-random', prompt: 'Once upon a time', maxTokens: 32 })) {
 *     if (chunk.done) console.error(`\n${chunk.stats.tokens} tokens, ${chunk.stats.tokensPerSecond.toFixed(1)} tok/s`);
 *     else process.stdout.write(chunk.text);
 *   }
 *   const { text } = await client.complete({ model: 'llama-2-tiny-random', prompt: 'Hi' });
 *   const status = await client.status();
 * } catch (err) {
 *   if (err instanceof NoAgentsError) console.error('no agent serves', err.model);
 * } finally {
 *   client.close();
 * }
 * ```
 *
 * @packageDocumentation
 */
export { DEFAULT_COORDINATOR, Generation, TitanClient } from './titan-client.js';
export { TitanAdminClient, toApiKeyInfo } from './admin-client.js';
export { DEFAULT_INSTANCE_MANAGER, InstanceManagerClient, type CallOptions } from './instance-manager-client.js';
export {
  AuthError,
  CapacityError,
  ClientConfigError,
  ClusterUnavailableError,
  ConnectionError,
  InvalidArgumentError,
  NoAgentsError,
  NotFoundError,
  ProtocolVersionError,
  QuotaExceededError,
  RequestFailedError,
  StreamInterruptedError,
  TimeoutError,
  TitanAbortError,
  TitanError,
  UnavailableError,
  toTitanError,
  type CallTarget,
  type ErrorContext,
  type MapErrorContext,
  type QuotaKind,
  type TitanErrorOptions,
} from './errors.js';
export { INSTANCE_TYPES, SERVICE_TYPES } from './instances/instance-mapping.js';
export { Status } from 'nice-grpc-common';
export type * from './types.js';

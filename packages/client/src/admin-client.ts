import { Metadata } from 'nice-grpc-common';
import { AdminServiceDefinition, type AdminServiceClient, type ApiKey } from '@titancompute/protocol';
import { InvalidArgumentError } from './errors.js';
import { CHANNEL_READY, DEFAULT_COORDINATOR } from './titan-client.js';
import { createChannelPool, type ChannelPool } from './transport/channel-pool.js';
import { createCoordinatorRotation, parseCoordinatorAddresses, type CoordinatorRotation } from './transport/coordinator-rotation.js';
import { callUnary, type UnaryCallOptions } from './transport/unary-call.js';
import type { ApiKeyInfo, CreateApiKeyOptions, CreatedApiKey, TitanAdminClientOptions } from './types.js';

const ms = (seconds: number) => (seconds > 0 ? seconds * 1000 : undefined);

/** The SDK's view of a proto `ApiKey` (times in unix ms, undefined when not set). */
export function toApiKeyInfo(key: ApiKey, nowMs: number = Date.now()): ApiKeyInfo {
  const expiresAtMs = ms(key.expiresAt);
  const revokedAtMs = ms(key.revokedAt);
  return {
    id: key.id,
    name: key.name,
    prefix: key.prefix,
    state: revokedAtMs !== undefined ? 'revoked' : expiresAtMs !== undefined && expiresAtMs <= nowMs ? 'expired' : 'active',
    requestsPerMinute: key.requestsPerMinute,
    tokensPerMinute: key.tokensPerMinute,
    maxConcurrent: key.maxConcurrent,
    budgetTokens: key.budgetTokens,
    models: [...key.models],
    createdAtMs: key.createdAt * 1000,
    expiresAtMs,
    revokedAtMs,
    tokensUsed: key.tokensUsed,
    requestsTotal: key.requestsTotal,
    lastUsedAtMs: ms(key.lastUsedAt),
  };
}

/**
 * Manages the coordinator's API keys over its AdminService, with the admin token. Errors are
 * `TitanError`s: `AuthError` for a missing or wrong admin token, `InvalidArgumentError` naming
 * the field, `NotFoundError`, `RequestFailedError` (ALREADY_EXISTS) …
 *
 * @example
 * ```ts
 * const admin = new TitanAdminClient({ coordinator: '127.0.0.1:50051', adminToken: process.env.TITAN_ADMIN_TOKEN! }); // or 'c1:50051,c2:50051'
 * const { secret } = await admin.createApiKey({ name: 'ci', requestsPerMinute: 60, models: ['llama-2-tiny-random'] });
 * console.log(secret); // tk-… (shown once)
 * for (const key of await admin.listApiKeys()) console.log(key.name, key.tokensUsed);
 * await admin.revokeApiKey('ci');
 * admin.close();
 * ```
 */
export class TitanAdminClient {
  /** Every coordinator address, in the order given (replicas share their API keys on PostgreSQL). */
  readonly coordinatorAddresses: readonly string[];
  readonly #pool: ChannelPool;
  readonly #clients = new Map<string, AdminServiceClient>();
  readonly #rotation: CoordinatorRotation;
  readonly #metadata: Metadata;
  readonly #requestTimeoutMs: number;

  constructor(options: TitanAdminClientOptions) {
    if (typeof options.adminToken !== 'string' || options.adminToken.trim() === '') {
      throw new InvalidArgumentError('adminToken: is required (the admin-token file in the coordinator data dir)', 'adminToken');
    }
    this.coordinatorAddresses = parseCoordinatorAddresses(options.coordinator ?? DEFAULT_COORDINATOR);
    this.#requestTimeoutMs = options.requestTimeoutMs ?? 10_000;
    this.#metadata = Metadata({ authorization: `Bearer ${options.adminToken.trim()}` });
    this.#pool = createChannelPool(options.tls);
    // Made now, as before: unreadable TLS files fail in the constructor.
    this.#client(this.coordinatorAddresses[0] ?? DEFAULT_COORDINATOR);
    this.#rotation = createCoordinatorRotation(
      this.coordinatorAddresses,
      (address) => this.#clients.has(address) && this.#pool.channel(address, 'coordinator').getConnectivityState(false) === CHANNEL_READY,
    );
  }

  /** Coordinator address in use: the one that answered last (the first one until any answered). */
  get coordinatorAddress(): string {
    return this.#rotation.current;
  }

  #client(address: string): AdminServiceClient {
    let client = this.#clients.get(address);
    if (!client) {
      client = this.#pool.factory.create(AdminServiceDefinition, this.#pool.channel(address, 'coordinator'));
      this.#clients.set(address, client);
    }
    return client;
  }

  /** One admin call, on the coordinators in turn (an unreachable one is skipped; see `CoordinatorRotation`). */
  #call<T>(signal: AbortSignal | undefined, call: (client: AdminServiceClient, options: UnaryCallOptions & { metadata: Metadata }) => Promise<T>): Promise<T> {
    return this.#rotation.call((address) =>
      callUnary({ target: 'coordinator', address, timeoutMs: this.#requestTimeoutMs, signal, extra: { call: 'admin' } }, (options) =>
        call(this.#client(address), { ...options, metadata: this.#metadata }),
      ),
    );
  }

  /** Creates a key; the secret (`tk-…`) is in the answer only. */
  async createApiKey(key: CreateApiKeyOptions, options: { signal?: AbortSignal } = {}): Promise<CreatedApiKey> {
    const created = await this.#call(options.signal, (client, o) => client.createApiKey(key, o));
    return { key: toApiKeyInfo(created.key!), secret: created.secret };
  }

  /** Active keys, oldest first; `includeInactive` adds revoked and expired ones. */
  async listApiKeys(options: { includeInactive?: boolean; signal?: AbortSignal } = {}): Promise<ApiKeyInfo[]> {
    const listed = await this.#call(options.signal, (client, o) => client.listApiKeys({ includeInactive: options.includeInactive ?? false }, o));
    const now = Date.now();
    return listed.keys.map((k) => toApiKeyInfo(k, now));
  }

  /** Revokes a key by id or name. */
  async revokeApiKey(idOrName: string, options: { signal?: AbortSignal } = {}): Promise<ApiKeyInfo> {
    const revoked = await this.#call(options.signal, (client, o) => client.revokeApiKey({ key: idOrName }, o));
    return toApiKeyInfo(revoked.key!);
  }

  /** Closes the channels. */
  close(): void {
    this.#clients.clear();
    this.#pool.close();
  }
}

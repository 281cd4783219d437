import type { CallContext } from 'nice-grpc-common';
import type { AdminServiceImplementation, ApiKey } from '@titancompute/protocol';
import type { ApiKeyRecord } from './api-key.js';
import type { ApiKeys } from './api-keys.js';
import { checkAdminToken } from './admin-token.js';

/** Dependencies of {@link createAdminService}. */
export interface AdminServiceOptions {
  keys: ApiKeys;
  /** The admin credential every call must present (`authorization: Bearer <admin token>`). */
  adminToken: string;
}

const seconds = (ms: number | undefined) => (ms === undefined ? 0 : Math.floor(ms / 1000));

/** The proto `ApiKey` of a stored key (times in unix seconds, 0 = not set; never the secret). */
export function toApiKeyMessage(key: ApiKeyRecord): ApiKey {
  return {
    id: key.id,
    name: key.name,
    prefix: key.prefix,
    requestsPerMinute: key.requestsPerMinute,
    tokensPerMinute: key.tokensPerMinute,
    maxConcurrent: key.maxConcurrent,
    budgetTokens: key.budgetTokens,
    models: [...key.models],
    createdAt: seconds(key.createdAtMs),
    expiresAt: seconds(key.expiresAtMs),
    revokedAt: seconds(key.revokedAtMs),
    tokensUsed: key.tokensUsed,
    requestsTotal: key.requestsTotal,
    lastUsedAt: seconds(key.lastUsedAtMs),
  };
}

/**
 * The AdminService handlers (gRPC): create, list and revoke API keys. Every call needs
 * metadata `authorization: Bearer <admin token>` (UNAUTHENTICATED otherwise, checked in constant
 * time); errors declare their status (INVALID_ARGUMENT naming the field, ALREADY_EXISTS, NOT_FOUND).
 */
export function createAdminService(options: AdminServiceOptions): AdminServiceImplementation {
  const { keys } = options;
  const requireAdmin = (context: CallContext) => checkAdminToken(context.metadata.get('authorization'), options.adminToken);
  return {
    async createApiKey(request, context) {
      requireAdmin(context);
      const { key, secret } = await keys.create(request);
      return { key: toApiKeyMessage(key), secret };
    },
    async listApiKeys(request, context) {
      requireAdmin(context);
      return { keys: (await keys.list({ includeInactive: request.includeInactive })).map(toApiKeyMessage) };
    },
    async revokeApiKey(request, context) {
      requireAdmin(context);
      return { key: toApiKeyMessage(await keys.revoke(request.key)) };
    },
  };
}

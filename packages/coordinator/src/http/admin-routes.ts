import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { Logger } from '@titancompute/server-kit';
import { isGrpcMappedError } from '@titancompute/server-kit';
import { z } from 'zod';
import { InvalidRequestError } from '../errors.js';
import { apiKeyState, type ApiKeyRecord } from '../keys/api-key.js';
import { parseKeyLifetime } from '../keys/api-key-input.js';
import type { ApiKeys } from '../keys/api-keys.js';
import { checkAdminToken } from '../keys/admin-token.js';
import { HTTP_ERROR_BY_GRPC_STATUS, sendError, sendMappedError } from './http-errors.js';

/** Dependencies of {@link registerAdminRoutes}. */
export interface AdminRoutesOptions {
  keys: ApiKeys;
  /** The admin credential (`Authorization: Bearer <admin token>`). */
  adminToken: string;
  logger: Logger;
}

const seconds = (ms: number | undefined) => (ms === undefined ? null : Math.floor(ms / 1000));

/** The REST JSON of a key: snake_case, unix seconds (null = not set), its state; never the secret. */
export function apiKeyJson(key: ApiKeyRecord, nowMs: number = Date.now()) {
  return {
    id: key.id,
    name: key.name,
    prefix: key.prefix,
    state: apiKeyState(key, nowMs),
    requests_per_minute: key.requestsPerMinute,
    tokens_per_minute: key.tokensPerMinute,
    max_concurrent: key.maxConcurrent,
    budget_tokens: key.budgetTokens,
    models: [...key.models],
    created_at: seconds(key.createdAtMs),
    expires_at: seconds(key.expiresAtMs),
    revoked_at: seconds(key.revokedAtMs),
    tokens_used: key.tokensUsed,
    requests_total: key.requestsTotal,
    last_used_at: seconds(key.lastUsedAtMs),
  };
}

const createBody = z.object({
  name: z.unknown().optional(),
  requests_per_minute: z.unknown().optional(),
  tokens_per_minute: z.unknown().optional(),
  max_concurrent: z.unknown().optional(),
  budget_tokens: z.unknown().optional(),
  models: z.unknown().optional(),
  expires_in_seconds: z.unknown().optional(),
  /** A lifetime such as `30d` (instead of expires_in_seconds). */
  expires: z.string({ error: 'must be a duration such as 30d, 12h or 90m' }).optional(),
});

/**
 * The admin REST API of API keys, on the coordinator's HTTP server: `GET /admin/keys`
 * (`?include_inactive=true` lists revoked and expired ones too), `POST /admin/keys` (JSON:
 * `name`, `requests_per_minute`, `tokens_per_minute`, `max_concurrent`, `budget_tokens`,
 * `models`, `expires_in_seconds` or `expires` like `30d`; 201 with `key` and the `secret`, shown
 * once) and `DELETE /admin/keys/:key` (id or name). Every route needs `Authorization: Bearer
 * <admin token>` (401 `unauthorized`); errors are `{error, code, message}` (400
 * `invalid_argument`/`invalid_json`, 404 `not_found`, 409 `already_exists`).
 *
 * @example
 * ```ts
 * const app = createHttpServer(options);
 * registerAdminRoutes(app, { keys, adminToken, logger });
 * ```
 */
export function registerAdminRoutes(app: FastifyInstance, options: AdminRoutesOptions): void {
  const { keys, logger } = options;
  /** Answers an error: declared statuses through the one table, anything else 500 (logged). */
  const fail = (reply: FastifyReply, err: unknown) => {
    if (isGrpcMappedError(err) && HTTP_ERROR_BY_GRPC_STATUS.has(err.grpcStatus)) return sendMappedError(reply, err, logger);
    logger.error({ err }, 'admin request failed');
    return sendError(reply, 500, 'token_generation_failed', 'internal error; see the coordinator log');
  };
  const admin = (req: FastifyRequest) => checkAdminToken(req.headers.authorization, options.adminToken);

  app.get<{ Querystring: { include_inactive?: string } }>('/admin/keys', async (req, reply) => {
    try {
      admin(req);
      const includeInactive = ['true', '1', 'yes'].includes(String(req.query.include_inactive ?? '').toLowerCase());
      const t = Date.now();
      return { keys: (await keys.list({ includeInactive })).map((k) => apiKeyJson(k, t)) };
    } catch (err) {
      return fail(reply, err);
    }
  });

  app.post('/admin/keys', async (req, reply) => {
    try {
      admin(req);
      let json: unknown;
      try {
        json = JSON.parse(typeof req.body === 'string' ? req.body : '');
      } catch {
        return sendError(reply, 400, 'invalid_json', 'request body must be a JSON object');
      }
      if (typeof json !== 'object' || json === null || Array.isArray(json)) return sendError(reply, 400, 'invalid_json', 'request body must be a JSON object');
      const parsed = createBody.safeParse(json);
      if (!parsed.success) throw new InvalidRequestError(String(parsed.error.issues[0]?.path[0] ?? 'request'), parsed.error.issues[0]?.message ?? 'is invalid');
      const body = parsed.data;
      let expiresInSeconds = body.expires_in_seconds;
      if (body.expires !== undefined) {
        if (expiresInSeconds !== undefined) throw new InvalidRequestError('expires', 'give either expires or expires_in_seconds');
        expiresInSeconds = parseKeyLifetime(body.expires);
        if (expiresInSeconds === undefined) throw new InvalidRequestError('expires', 'must be a duration such as 30d, 12h, 90m or 3600s');
      }
      const created = await keys.create({
        name: body.name as string,
        requestsPerMinute: body.requests_per_minute as number | undefined,
        tokensPerMinute: body.tokens_per_minute as number | undefined,
        maxConcurrent: body.max_concurrent as number | undefined,
        budgetTokens: body.budget_tokens as number | undefined,
        models: body.models as string[] | undefined,
        expiresInSeconds: expiresInSeconds as number | undefined,
      });
      return reply.code(201).send({
        key: apiKeyJson(created.key),
        secret: created.secret,
        warning: 'the secret is shown only this once; the coordinator keeps only its hash',
      });
    } catch (err) {
      return fail(reply, err);
    }
  });

  app.delete<{ Params: { key: string } }>('/admin/keys/:key', async (req, reply) => {
    try {
      admin(req);
      return { key: apiKeyJson(await keys.revoke(req.params.key)) };
    } catch (err) {
      return fail(reply, err);
    }
  });
}

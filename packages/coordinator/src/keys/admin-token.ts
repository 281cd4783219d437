import { join } from 'node:path';
import { AdminAuthError } from '../errors.js';
import { checkBearer, type ResolvedSecret, resolveSecretFile } from '../secret-file.js';

/** Where a generated admin token lives. */
export function adminTokenPath(dataDir: string): string {
  return join(dataDir, 'admin-token');
}

/** The admin token in use and where it came from. */
export type ResolvedAdminToken = ResolvedSecret;

/**
 * Resolves the admin credential (it manages API keys): the configured one (`--admin-token`,
 * `TITAN_ADMIN_TOKEN`) if any; else the one in `<dataDir>/admin-token`; else a new random one
 * (32 bytes, base64url) written there with mode 0600.
 *
 * @example
 * ```ts
 * const { token, source, file } = await resolveAdminToken('./.titan/coordinator', process.env.TITAN_ADMIN_TOKEN);
 * ```
 */
export function resolveAdminToken(dataDir: string, configured: string | undefined): Promise<ResolvedAdminToken> {
  return resolveSecretFile(adminTokenPath(dataDir), configured);
}

/**
 * Checks an `authorization: Bearer <admin token>` value (gRPC metadata or HTTP header) against
 * the admin token, comparing SHA-256 digests in constant time (neither the token nor its length
 * leaks); throws {@link AdminAuthError} (UNAUTHENTICATED, REST 401) when missing or wrong.
 */
export function checkAdminToken(authorization: string | undefined, expected: string): void {
  const verdict = checkBearer(authorization, expected);
  if (verdict === 'missing') {
    throw new AdminAuthError('missing admin token: send "authorization: Bearer <admin token>" (the file admin-token in the coordinator\'s data dir)');
  }
  if (verdict === 'malformed') throw new AdminAuthError('malformed authorization: expected "Bearer <admin token>"');
  if (verdict === 'wrong') throw new AdminAuthError('invalid admin token');
}

import { join } from 'node:path';
import { JoinTokenError } from './errors.js';
import { checkBearer, type ResolvedSecret, resolveSecretFile } from './secret-file.js';

/** Where a generated join token lives. */
export function joinTokenPath(dataDir: string): string {
  return join(dataDir, 'join-token');
}

/** The join token in use and where it came from. */
export type ResolvedJoinToken = ResolvedSecret;

/**
 * Resolves the join token: the configured one (TITAN_JOIN_TOKEN / --join-token) if any; else
 * the one in `<dataDir>/join-token`; else a new random one written there with mode 0600.
 *
 * @example
 * ```ts
 * const { token, source, file } = await resolveJoinToken('./.titan/coordinator', process.env.TITAN_JOIN_TOKEN);
 * ```
 */
export function resolveJoinToken(dataDir: string, configured: string | undefined): Promise<ResolvedJoinToken> {
  return resolveSecretFile(joinTokenPath(dataDir), configured);
}

/**
 * Checks an `authorization: Bearer <token>` metadata value against the join token in
 * constant time (SHA-256 digests: neither the token nor its length leaks); throws
 * {@link JoinTokenError} (UNAUTHENTICATED) when missing or wrong.
 */
export function checkJoinToken(authorization: string | undefined, expected: string): void {
  const verdict = checkBearer(authorization, expected);
  if (verdict === 'missing') throw new JoinTokenError('missing join token: send metadata "authorization: Bearer <join token>"');
  if (verdict === 'malformed') throw new JoinTokenError('malformed authorization metadata: expected "Bearer <join token>"');
  if (verdict === 'wrong') throw new JoinTokenError('invalid join token');
}

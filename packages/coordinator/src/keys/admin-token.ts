import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { chmod, mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { AdminAuthError } from '../errors.js';

/** Where a generated admin token lives. */
export function adminTokenPath(dataDir: string): string {
  return join(dataDir, 'admin-token');
}

/** The admin token in use and where it came from. */
export interface ResolvedAdminToken {
  token: string;
  /** `configured` (flag, env or option), `file` (reused from the data dir) or `generated` (new, written to the data dir). */
  source: 'configured' | 'file' | 'generated';
  /** The file, for `file` and `generated`. */
  file?: string;
}

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
export async function resolveAdminToken(dataDir: string, configured: string | undefined): Promise<ResolvedAdminToken> {
  if (configured) return { token: configured, source: 'configured' };
  const file = adminTokenPath(dataDir);
  try {
    const existing = (await readFile(file, 'utf8')).trim();
    if (existing) return { token: existing, source: 'file', file };
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  const token = randomBytes(32).toString('base64url');
  await mkdir(dataDir, { recursive: true, mode: 0o700 });
  await writeFile(file, `${token}\n`, { mode: 0o600 });
  await chmod(file, 0o600);
  return { token, source: 'generated', file };
}

const sha256 = (value: string) => createHash('sha256').update(value, 'utf8').digest();

/**
 * Checks an `authorization: Bearer <admin token>` value (gRPC metadata or HTTP header) against
 * the admin token, comparing SHA-256 digests in constant time (neither the token nor its length
 * leaks); throws {@link AdminAuthError} (UNAUTHENTICATED, REST 401) when missing or wrong.
 */
export function checkAdminToken(authorization: string | undefined, expected: string): void {
  if (!authorization) {
    throw new AdminAuthError('missing admin token: send "authorization: Bearer <admin token>" (the file admin-token in the coordinator\'s data dir)');
  }
  const m = /^Bearer\s+(\S+)\s*$/i.exec(authorization.trim());
  if (!m?.[1]) throw new AdminAuthError('malformed authorization: expected "Bearer <admin token>"');
  if (!timingSafeEqual(sha256(m[1]), sha256(expected))) throw new AdminAuthError('invalid admin token');
}

import { randomBytes, timingSafeEqual } from 'node:crypto';
import { chmod, mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { JoinTokenError } from './errors.js';

/** Where a generated join token lives. */
export function joinTokenPath(dataDir: string): string {
  return join(dataDir, 'join-token');
}

/** The join token in use and where it came from. */
export interface ResolvedJoinToken {
  token: string;
  /** `configured` (flag, env or option), `file` (reused from the data dir) or `generated` (new, written to the data dir). */
  source: 'configured' | 'file' | 'generated';
  /** The file, for `file` and `generated`. */
  file?: string;
}

/**
 * Resolves the join token: the configured one (TITAN_JOIN_TOKEN / --join-token) if any; else
 * the one in `<dataDir>/join-token`; else a new random one written there with mode 0600.
 *
 * @example
 * ```ts
 * const { token, source, file } = await resolveJoinToken('./.titan/coordinator', process.env.TITAN_JOIN_TOKEN);
 * ```
 */
export async function resolveJoinToken(dataDir: string, configured: string | undefined): Promise<ResolvedJoinToken> {
  if (configured) return { token: configured, source: 'configured' };
  const file = joinTokenPath(dataDir);
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

/**
 * Checks an `authorization: Bearer <token>` metadata value against the join token in
 * constant time; throws {@link JoinTokenError} (UNAUTHENTICATED) when missing or wrong.
 */
export function checkJoinToken(authorization: string | undefined, expected: string): void {
  if (!authorization) throw new JoinTokenError('missing join token: send metadata "authorization: Bearer <join token>"');
  const m = /^Bearer\s+(.+)$/i.exec(authorization.trim());
  if (!m?.[1]) throw new JoinTokenError('malformed authorization metadata: expected "Bearer <join token>"');
  const got = Buffer.from(m[1]);
  const want = Buffer.from(expected);
  if (got.length !== want.length || !timingSafeEqual(got, want)) throw new JoinTokenError('invalid join token');
}

import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { chmod, mkdir, readFile, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';

/** A shared secret in use (the join token, the admin token) and where it came from. */
export interface ResolvedSecret {
  token: string;
  /** `configured` (flag, env or option), `file` (reused from the data dir) or `generated` (new, written to the data dir). */
  source: 'configured' | 'file' | 'generated';
  /** The file, for `file` and `generated`. */
  file?: string;
}

/**
 * Resolves a shared secret that a service generates at its first start: the configured value if
 * any; else the one in `file`; else a new random one (32 bytes, base64url) written there with mode
 * 0600 (its folder created with 0700).
 *
 * @example
 * ```ts
 * const { token, source } = await resolveSecretFile('./.titan/coordinator/join-token', process.env.TITAN_JOIN_TOKEN);
 * ```
 */
export async function resolveSecretFile(file: string, configured: string | undefined): Promise<ResolvedSecret> {
  if (configured) return { token: configured, source: 'configured' };
  try {
    const existing = (await readFile(file, 'utf8')).trim();
    if (existing) return { token: existing, source: 'file', file };
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  const token = randomBytes(32).toString('base64url');
  await mkdir(dirname(file), { recursive: true, mode: 0o700 });
  await writeFile(file, `${token}\n`, { mode: 0o600 });
  await chmod(file, 0o600);
  return { token, source: 'generated', file };
}

const sha256 = (value: string) => createHash('sha256').update(value, 'utf8').digest();

/**
 * What an `authorization` value (gRPC metadata or HTTP header) says about a bearer secret:
 * `missing`, `malformed` (not `Bearer <secret>`), `wrong` or `ok`. The comparison is of SHA-256
 * digests in constant time, so neither the secret nor its length leaks.
 */
export function checkBearer(authorization: string | undefined, expected: string): 'missing' | 'malformed' | 'wrong' | 'ok' {
  if (!authorization) return 'missing';
  const m = /^Bearer\s+(\S+)\s*$/i.exec(authorization.trim());
  if (!m?.[1]) return 'malformed';
  return timingSafeEqual(sha256(m[1]), sha256(expected)) ? 'ok' : 'wrong';
}

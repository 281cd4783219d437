import { randomBytes } from 'node:crypto';
import { chmod, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { AgentConfigError } from '../errors.js';

/** File name of the credential inside the agent's data dir. */
export const CREDENTIAL_FILE = 'agent-credential';

/** Shape of a credential this agent accepts from its file: 32–512 printable characters, no spaces. */
const CREDENTIAL_PATTERN = /^[\x21-\x7e]{32,512}$/;

/** The agent's credential and where it came from. */
export interface AgentCredential {
  /** The secret sent to the coordinator (RegisterAgent, first HealthUpdate of a stream, DeregisterAgent). */
  readonly value: string;
  /** `file` (reused), `generated` (new, written to the data dir) or `memory` (no data dir: lost on exit). */
  readonly source: 'file' | 'generated' | 'memory';
  /** The file, unless `memory`. */
  readonly file?: string;
}

/** A new credential: 32 random bytes, base64url (43 characters). */
export function generateCredential(): string {
  return randomBytes(32).toString('base64url');
}

/**
 * Loads the agent's own credential from `<dataDir>/agent-credential`, or generates one there
 * on first start (mode 0600, written atomically: a temp file renamed into place). The
 * coordinator binds the agent's id to it on the first registration, so keep the data dir:
 * a new credential for the same id is refused until the operator runs
 * `titan-coordinator forget-agent ID`. Without a data dir the credential lives in memory only.
 * A file that is unreadable or not a credential is an {@link AgentConfigError} naming it (it is
 * never silently replaced).
 *
 * @example
 * ```ts
 * const { value, source, file } = await loadAgentCredential('/var/lib/titan/agent');
 * ```
 */
export async function loadAgentCredential(dataDir: string | undefined): Promise<AgentCredential> {
  if (dataDir === undefined) return { value: generateCredential(), source: 'memory' };
  const file = join(dataDir, CREDENTIAL_FILE);
  let existing: string | undefined;
  try {
    existing = (await readFile(file, 'utf8')).trim();
  } catch (cause) {
    if ((cause as NodeJS.ErrnoException).code !== 'ENOENT') {
      throw new AgentConfigError(`cannot read the agent credential ${file}: ${(cause as Error).message}`, { file }, { cause });
    }
  }
  if (existing !== undefined) {
    if (!CREDENTIAL_PATTERN.test(existing)) {
      throw new AgentConfigError(
        `the agent credential ${file} is not a credential (32-512 printable characters without spaces); ` +
          `restore it, or delete it and release this agent id on the coordinator (titan-coordinator forget-agent ID)`,
        { file },
      );
    }
    return { value: existing, source: 'file', file };
  }
  const value = generateCredential();
  const temp = `${file}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
  try {
    await writeFile(temp, `${value}\n`, { mode: 0o600, flag: 'wx' });
    await chmod(temp, 0o600);
    await rename(temp, file);
  } catch (cause) {
    await rm(temp, { force: true }).catch(() => undefined);
    throw new AgentConfigError(`cannot write the agent credential ${file}: ${(cause as Error).message}`, { file }, { cause });
  }
  return { value, source: 'generated', file };
}

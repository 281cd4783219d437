import {
  ClientConfigError,
  ConnectionError,
  InvalidArgumentError,
  AuthError,
  NoAgentsError,
  QuotaExceededError,
  StreamInterruptedError,
  TitanAbortError,
  UnavailableError,
} from '../errors.js';

/** Exit codes of the `titan` CLI (also listed in `titan --help` and the README). */
export const EXIT = {
  /** Success. */
  OK: 0,
  /** The request failed (busy, timeout, not found, version mismatch …). */
  FAILED: 1,
  /** Usage error: bad flags or arguments, or the server rejected an argument as invalid. */
  USAGE: 2,
  /** Cluster unavailable: cannot connect, or no agent serves the model. */
  UNAVAILABLE: 3,
  /** The token stream broke after text was printed (not restarted). */
  INTERRUPTED: 4,
  /** Credentials refused: API key missing, unknown, revoked or expired, a model the key may not use, a wrong admin token, a refused session token. */
  AUTH: 5,
  /** An API key's quota is used up (requests or tokens per minute, concurrent jobs, token budget). */
  QUOTA: 6,
  /** Cancelled by the user (Ctrl-C, SIGINT). */
  CANCELLED: 130,
  /** Terminated (SIGTERM): the command was cancelled the same way. */
  TERMINATED: 143,
} as const;

/** The exit code for an error thrown by a command. */
export function exitCodeFor(error: unknown): number {
  if (error instanceof InvalidArgumentError || error instanceof ClientConfigError) return EXIT.USAGE;
  if (error instanceof ConnectionError || error instanceof NoAgentsError || error instanceof UnavailableError) return EXIT.UNAVAILABLE;
  if (error instanceof StreamInterruptedError) return EXIT.INTERRUPTED;
  if (error instanceof AuthError) return EXIT.AUTH;
  if (error instanceof QuotaExceededError) return EXIT.QUOTA;
  if (error instanceof TitanAbortError) return EXIT.CANCELLED;
  return EXIT.FAILED;
}

/** Text for the help footer. */
export const EXIT_CODES_HELP = `Exit codes:
  0    success
  1    request failed (busy, timeout, not found, version mismatch)
  2    usage error (bad flags or arguments, or an argument the server rejected)
  3    cluster unavailable (cannot connect, or no agent serves the model)
  4    stream interrupted after text was printed (never restarted)
  5    credentials refused (API key, admin token, model not allowed for the key)
  6    API key quota used up (rate limit or token budget)
  130  cancelled (Ctrl-C)
  143  terminated (SIGTERM)`;

import { pino, type Logger, type LevelWithSilent } from 'pino';

export type { Logger };

/** Options of {@link createLogger}. */
export interface LoggerOptions {
  /** Service name, in every line as `service`. */
  service: string;
  /** Default `info`. */
  level?: LevelWithSilent;
  /** File descriptor to write to. Default 1 (stdout). */
  fd?: number;
}

/**
 * Structured JSON logs (pino), written synchronously so nothing is lost when a process exits.
 *
 * @example
 * ```ts
 * const logger = createLogger({ service: 'titan-coordinator', level: config.logLevel });
 * logger.info({ port }, 'listening');
 * ```
 */
export function createLogger(options: LoggerOptions): Logger {
  return pino(
    { level: options.level ?? 'info', base: { service: options.service, pid: process.pid } },
    pino.destination({ fd: options.fd ?? 1, sync: true }),
  );
}

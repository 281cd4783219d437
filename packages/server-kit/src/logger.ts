import { isatty } from 'node:tty';
import { pino, type Logger, type LevelWithSilent } from 'pino';
import { PinoPretty } from 'pino-pretty';

export type { Logger };

/** `json`: one JSON object per line; `pretty`: readable lines (pino-pretty); `auto`: pretty on a terminal, else json. */
export type LogFormat = 'auto' | 'json' | 'pretty';

/** Options of {@link createLogger}. */
export interface LoggerOptions {
  /** Service name, in every line as `service`. */
  service: string;
  /** Default `info`. */
  level?: LevelWithSilent;
  /** File descriptor to write to. Default 1 (stdout). */
  fd?: number;
  /**
   * Default `auto`: `pretty` when `fd` is a terminal, `json` otherwise (pipes, files, log
   * collectors and the local cluster launcher, which parses the JSON lines).
   */
  format?: LogFormat;
}

/** Whether `format` means readable lines on `fd` (`auto`: only on a terminal). */
export function isPrettyLogFormat(format: LogFormat, fd: number): boolean {
  return format === 'pretty' || (format === 'auto' && isatty(fd));
}

/**
 * Structured logs (pino), written synchronously so nothing is lost when a process exits:
 * JSON lines, or readable lines (pino-pretty: time, level, service, message, fields) when
 * `format` is `pretty`, or `auto` on a terminal.
 *
 * @example
 * ```ts
 * const logger = createLogger({ service: 'titan-coordinator', level: config.logLevel, format: config.logFormat });
 * logger.info({ port }, 'listening');
 * ```
 */
export function createLogger(options: LoggerOptions): Logger {
  const fd = options.fd ?? 1;
  const base = { level: options.level ?? 'info', base: { service: options.service, pid: process.pid } };
  if (isPrettyLogFormat(options.format ?? 'auto', fd)) {
    return pino(
      base,
      PinoPretty({
        destination: fd,
        sync: true,
        colorize: isatty(fd),
        translateTime: 'SYS:HH:MM:ss.l',
        ignore: 'pid,hostname,service',
        messageFormat: '{service}: {msg}',
        hideObject: false,
      }),
    );
  }
  return pino(base, pino.destination({ fd, sync: true }));
}

/** Base class of the server kit's errors. */
export class ServerKitError extends Error {
  override readonly name: string = 'ServerKitError';
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}

/**
 * A configuration value is invalid. Bins exit with {@link EXIT_USAGE} and print the message,
 * which names the option or variable, the expected form and the value received.
 */
export class ConfigError extends ServerKitError {
  override readonly name = 'ConfigError';
  constructor(
    message: string,
    readonly context: { readonly option: string; readonly source: string; readonly expected: string; readonly got?: string },
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** `--help` was asked for: not an error, the bin prints `usage` and exits 0. */
export class HelpRequested extends ServerKitError {
  override readonly name = 'HelpRequested';
  constructor(readonly usage: string) {
    super('help requested');
  }
}

/** `--version` was asked for: not an error, the bin prints `version` and exits 0. */
export class VersionRequested extends ServerKitError {
  override readonly name = 'VersionRequested';
  constructor(readonly version: string) {
    super('version requested');
  }
}

/** Exit code of a bin given a bad flag, environment variable or argument. */
export const EXIT_USAGE = 2;

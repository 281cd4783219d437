import { ConfigError, EXIT_USAGE, HelpRequested } from './errors.js';

/**
 * Calls `handler` once on the first SIGTERM or SIGINT; a second signal exits at once with 1.
 * Returns a function that removes the listeners.
 */
export function onShutdownSignal(handler: (signal: NodeJS.Signals) => void | Promise<void>): () => void {
  let called = false;
  const listener = (signal: NodeJS.Signals) => {
    if (called) process.exit(1);
    called = true;
    void Promise.resolve(handler(signal)).catch((err: unknown) => {
      process.stderr.write(`shutdown failed: ${(err as Error).stack ?? String(err)}\n`);
      process.exit(1);
    });
  };
  process.on('SIGTERM', listener);
  process.on('SIGINT', listener);
  return () => {
    process.off('SIGTERM', listener);
    process.off('SIGINT', listener);
  };
}

/**
 * Runs a bin's main function: `--help` prints usage and exits 0; a {@link ConfigError} prints
 * its message and exits 2; any other startup error prints and exits 1.
 *
 * @example
 * ```ts
 * runMain(async () => {
 *   const config = loadConfig(spec, { name: 'titan-coordinator' });
 *   ...
 * });
 * ```
 */
export function runMain(main: () => Promise<void>, name = process.argv[1] ?? 'titan'): void {
  main().catch((err: unknown) => {
    if (err instanceof HelpRequested) {
      process.stdout.write(err.usage);
      process.exit(0);
    }
    if (err instanceof ConfigError) {
      process.stderr.write(`${name}: ${err.message}\n`);
      process.exit(EXIT_USAGE);
    }
    process.stderr.write(`${name}: failed to start: ${(err as Error).stack ?? String(err)}\n`);
    process.exit(1);
  });
}

import { ConfigError, EXIT_USAGE, HelpRequested, VersionRequested } from './errors.js';

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
 * Makes this process shut down (SIGTERM to itself, so the bin's {@link onShutdownSignal}
 * handler drains as usual) once the process `parentPid` is no longer its parent — the
 * launcher died, even by SIGKILL, and this process was re-parented. Checks every
 * `intervalMs` (default 500) on an unref'd timer. Returns a function that stops watching.
 * {@link runMain} calls it when the environment variable `TITAN_PARENT_PID` is set (the local
 * cluster launcher sets it).
 */
export function exitWithParent(parentPid: number, intervalMs = 500): () => void {
  const timer = setInterval(() => {
    if (process.ppid === parentPid) return;
    clearInterval(timer);
    process.stderr.write(`parent process ${parentPid} is gone; shutting down\n`);
    process.kill(process.pid, 'SIGTERM');
  }, intervalMs);
  timer.unref();
  return () => clearInterval(timer);
}

/** `message: cause: cause…`, one line. */
function describeError(err: unknown): string {
  const parts: string[] = [];
  for (let e: unknown = err, depth = 0; e !== undefined && e !== null && depth < 5; depth += 1) {
    const message = e instanceof Error ? e.message : String(e);
    if (message && !parts.includes(message)) parts.push(message);
    e = e instanceof Error ? e.cause : undefined;
  }
  return parts.join(': ').replace(/\s*\n\s*/g, ' ');
}

/**
 * Runs a bin's main function: `-h`/`--help` prints usage and `--version` the version, exit 0;
 * a {@link ConfigError} prints one line `name: message` and exits 2; any other startup
 * error prints one line `name: failed to start: message: cause` and exits 1 (the stack too
 * when TITAN_LOG_LEVEL is debug or trace). With TITAN_PARENT_PID set, the process also
 * shuts down when that parent dies ({@link exitWithParent}).
 *
 * @example
 * ```ts
 * runMain(async () => {
 *   const config = loadConfig(spec, { name: 'titan-coordinator', version: readPackageVersion(import.meta.url) });
 *   ...
 * });
 * ```
 */
export function runMain(main: () => Promise<void>, name = process.argv[1] ?? 'titan'): void {
  const parentPid = Number(process.env.TITAN_PARENT_PID);
  if (Number.isInteger(parentPid) && parentPid > 0) exitWithParent(parentPid);
  main().catch((err: unknown) => {
    if (err instanceof HelpRequested) {
      process.stdout.write(err.usage);
      process.exit(0);
    }
    if (err instanceof VersionRequested) {
      process.stdout.write(`${err.version}\n`);
      process.exit(0);
    }
    if (err instanceof ConfigError) {
      process.stderr.write(`${name}: ${err.message}\n`);
      process.exit(EXIT_USAGE);
    }
    process.stderr.write(`${name}: failed to start: ${describeError(err)}\n`);
    if (/^(debug|trace)$/.test(process.env.TITAN_LOG_LEVEL ?? '')) process.stderr.write(`${(err as Error).stack ?? ''}\n`);
    process.exit(1);
  });
}

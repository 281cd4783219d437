#!/usr/bin/env node
/**
 * The `titan` command (see `titan --help`). Ctrl-C (SIGINT) cancels the running command (the
 * agent frees its slot) and exits 130; SIGTERM does the same and exits 143 (128 + 15). If the
 * command has not ended {@link SIGNAL_GRACE_MS} after the signal, or a second signal comes,
 * the process exits at once with that code: a signal always ends the CLI.
 */
import { EXIT } from './exit-codes.js';
import { runCli } from './main.js';
import { startCliTracing } from './tracing.js';

/** How long a cancelled command may take to wind down before the process exits anyway. */
const SIGNAL_GRACE_MS = 2000;
const SIGNAL_EXIT: Record<'SIGINT' | 'SIGTERM', number> = { SIGINT: EXIT.CANCELLED, SIGTERM: EXIT.TERMINATED };

const controller = new AbortController();
let signalExit: number | undefined;
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.on(signal, () => {
    if (signalExit !== undefined) process.exit(signalExit); // second signal: no more waiting
    signalExit = SIGNAL_EXIT[signal];
    controller.abort();
    setTimeout(() => process.exit(signalExit), SIGNAL_GRACE_MS).unref();
  });
}
// `titan … | head`: the reader closed the pipe, so there is nobody left to write for. Stop the
// command (the agent frees its slot) and leave quietly instead of crashing on EPIPE.
for (const stream of [process.stdout, process.stderr]) {
  stream.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code !== 'EPIPE') throw err;
    controller.abort();
    process.exit(process.exitCode ?? 0);
  });
}
// OpenTelemetry only when OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT is set: the SDK is not loaded otherwise.
const tracing = await startCliTracing(process.env);
const code = await runCli(process.argv.slice(2), {
  stdout: process.stdout,
  stderr: process.stderr,
  env: process.env,
  signal: controller.signal,
});
// The generation's span leaves before the process ends.
await tracing.shutdown();
// Ended by a signal: the signal's code, like any Unix tool (also for `instances watch`).
process.exitCode = signalExit ?? code;

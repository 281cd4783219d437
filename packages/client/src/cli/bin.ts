#!/usr/bin/env node
/**
 * The `titan` command (see `titan --help`). Ctrl-C cancels the running command (the agent
 * frees its slot) and exits 130.
 */
import { runCli } from './main.js';

const controller = new AbortController();
process.once('SIGINT', () => controller.abort());
// `titan … | head`: the reader closed the pipe, so there is nobody left to write for. Stop the
// command (the agent frees its slot) and leave quietly instead of crashing on EPIPE.
for (const stream of [process.stdout, process.stderr]) {
  stream.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code !== 'EPIPE') throw err;
    controller.abort();
    process.exit(process.exitCode ?? 0);
  });
}
process.exitCode = await runCli(process.argv.slice(2), {
  stdout: process.stdout,
  stderr: process.stderr,
  env: process.env,
  signal: controller.signal,
});

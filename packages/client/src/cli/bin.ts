#!/usr/bin/env node
/**
 * The `titan` command (see `titan --help`). Ctrl-C cancels the running command (the agent
 * frees its slot) and exits 130.
 */
import { runCli } from './main.js';

const controller = new AbortController();
process.once('SIGINT', () => controller.abort());
process.exitCode = await runCli(process.argv.slice(2), {
  stdout: process.stdout,
  stderr: process.stderr,
  env: process.env,
  signal: controller.signal,
});

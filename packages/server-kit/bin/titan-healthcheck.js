#!/usr/bin/env node
// The `titan-healthcheck` bin. This small launcher is committed so that `pnpm install` links the bin
// even before anything is built; it runs the compiled dist/healthcheck.js.
import { existsSync } from 'node:fs';

const target = new URL('../dist/healthcheck.js', import.meta.url);
if (!existsSync(target)) {
  process.stderr.write('titan-healthcheck: not built yet (dist/healthcheck.js is missing): run `pnpm build` in the TitanCompute repository\n');
  process.exit(1);
}
await import(target.href);

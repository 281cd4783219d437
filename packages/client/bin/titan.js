#!/usr/bin/env node
// The `titan` bin. This small launcher is committed so that `pnpm install` links the bin
// even before anything is built; it runs the compiled dist/cli/bin.js.
import { existsSync } from 'node:fs';

const target = new URL('../dist/cli/bin.js', import.meta.url);
if (!existsSync(target)) {
  process.stderr.write('titan: not built yet (dist/cli/bin.js is missing): run `pnpm build` in the TitanCompute repository\n');
  process.exit(1);
}
await import(target.href);

#!/usr/bin/env node
/**
 * Builds the CommonJS flavour (dist/cjs) of every package that has a tsconfig.cjs.json
 * (the two published packages), so both `import` and `require` consumers get code and types.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const tsc = join(root, 'node_modules/.bin/tsc');
for (const name of readdirSync(join(root, 'packages'))) {
  const dir = join(root, 'packages', name);
  if (!existsSync(join(dir, 'tsconfig.cjs.json'))) continue;
  execFileSync(tsc, ['-p', join(dir, 'tsconfig.cjs.json')], { stdio: 'inherit' });
  writeFileSync(join(dir, 'dist/cjs/package.json'), JSON.stringify({ type: 'commonjs' }) + '\n');
}

#!/usr/bin/env node
/**
 * Builds the CommonJS flavour (dist/cjs) of every package that has a tsconfig.cjs.json
 * (the two published packages), so both `import` and `require` consumers get code and types.
 * Incremental: `tsc -b` on each tsconfig.cjs.json (its .tsbuildinfo lives in dist/cjs), so a
 * package whose sources did not change is skipped in milliseconds.
 * Run directly, or through scripts/build.mjs (`pnpm build`), which calls {@link buildCjs}.
 */
import { spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const tsc = join(root, 'node_modules/typescript/bin/tsc');

/** Runs tsc with `args`; resolves with its stdout, rejects with its output on failure. */
function runTsc(args) {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [tsc, ...args], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (out += d));
    child.on('close', (code) => (code === 0 ? resolve(out) : reject(new Error(`tsc ${args.join(' ')} failed:\n${out}`))));
  });
}

/**
 * Builds dist/cjs of each package with a tsconfig.cjs.json, skipping those that are up to date.
 * @param {{ say?: (line: string) => void }} [options] `say` gets one line per package built.
 */
export async function buildCjs(options = {}) {
  const say = options.say ?? ((line) => process.stdout.write(`${line}\n`));
  for (const name of readdirSync(join(root, 'packages')).sort()) {
    const dir = join(root, 'packages', name);
    const config = join(dir, 'tsconfig.cjs.json');
    if (!existsSync(config)) continue;
    const verbose = await runTsc(['-b', config, '--verbose', '--pretty', 'false']);
    if (/Building project/.test(verbose)) say(`build: ${name} (CommonJS)…`);
    const marker = join(dir, 'dist/cjs/package.json');
    const content = `${JSON.stringify({ type: 'commonjs' })}\n`;
    if (!existsSync(marker) || readFileSync(marker, 'utf8') !== content) writeFileSync(marker, content);
  }
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) await buildCjs();

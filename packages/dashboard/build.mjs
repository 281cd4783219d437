#!/usr/bin/env node
/**
 * Builds the dashboard: type-checks it (`tsc -p`, no emit), then `vite build` into `dist/`.
 * Incremental: skipped when `dist/index.html` is newer than every input (sources, index.html,
 * public/, the Vite config, package.json and the coordinator's wire format). The root
 * `pnpm build` (scripts/build.mjs) calls {@link buildDashboard}; `node packages/dashboard/build.mjs
 * [--force]` runs it alone.
 */
import { spawn } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = fileURLToPath(new URL('.', import.meta.url));
const root = resolve(here, '../..');

/** Newest modification time (ms) under `path` (a file or a folder). */
function newest(path) {
  if (!existsSync(path)) return 0;
  const stat = statSync(path);
  if (!stat.isDirectory()) return stat.mtimeMs;
  let max = stat.mtimeMs;
  for (const entry of readdirSync(path)) max = Math.max(max, newest(join(path, entry)));
  return max;
}

function run(args, say) {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(process.execPath, args, { cwd: here, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (out += d));
    child.on('close', (code) => {
      if (code === 0) return resolvePromise(out);
      say?.(out.trimEnd());
      reject(new Error(`${args.slice(0, 2).join(' ')} failed (exit ${code})`));
    });
  });
}

/**
 * Builds the dashboard unless it is up to date; resolves with whether it built.
 * @param {{ say?: (line: string) => void, force?: boolean }} [options]
 */
export async function buildDashboard(options = {}) {
  const say = options.say ?? ((line) => process.stdout.write(`${line}\n`));
  const inputs = [
    'src',
    'public',
    'index.html',
    'vite.config.ts',
    'package.json',
    'tsconfig.json',
    join(root, 'packages/coordinator/src/dashboard/dashboard-wire.ts'),
  ];
  const built = newest(join(here, 'dist/index.html'));
  if (!options.force && built > 0 && inputs.every((p) => newest(resolve(here, p)) < built)) return false;
  say('build: dashboard (tsc, vite)…');
  await run([join(root, 'node_modules/typescript/bin/tsc'), '-p', 'tsconfig.json', '--pretty', 'false'], say);
  await run([join(here, 'node_modules/vite/bin/vite.js'), 'build', '--logLevel', 'warn'], say);
  return true;
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  buildDashboard({ force: process.argv.includes('--force') }).then(
    (built) => process.stdout.write(built ? 'dashboard built into packages/dashboard/dist\n' : 'dashboard is up to date\n'),
    (err) => {
      process.stderr.write(`${err.message}\n`);
      process.exit(1);
    },
  );
}

#!/usr/bin/env node
/**
 * `pnpm build`: compiles every package (`tsc -b`, incremental: only what changed since the last
 * build), then the CommonJS flavour of the published packages (scripts/build-cjs.mjs, also
 * incremental), then the dashboard the coordinator serves (packages/dashboard/build.mjs: tsc and
 * Vite, skipped when up to date), printing one line per package it builds and the time taken.
 *
 * `--from-install` (the root `prepare` script, run by `pnpm install`): a failed build only
 * warns and exits 0, so the dependencies stay installed; the bins then say to run `pnpm build`.
 */
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildCjs } from './build-cjs.mjs';
import { buildDashboard } from '../packages/dashboard/build.mjs';

const root = fileURLToPath(new URL('..', import.meta.url));
const tsc = join(root, 'node_modules/typescript/bin/tsc');
const fromInstall = process.argv.includes('--from-install');
const say = (line) => process.stdout.write(`${line}\n`);

/** `packages/x/tsconfig.json` → `x`. */
const projectName = (path) =>
  relative(root, path)
    .replace(/^packages\//, '')
    .replace(/\/tsconfig(\.\w+)?\.json$/, '');

/** Runs `tsc -b --verbose`, turning its progress lines into `build: <package>` and passing errors through. */
function tscBuild() {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [tsc, '-b', '--verbose', '--pretty', 'false'], { cwd: root, stdio: ['ignore', 'pipe', 'inherit'] });
    let built = 0;
    let listing = false;
    createInterface({ input: child.stdout }).on('line', (line) => {
      const progress = /^\S+(?: [AP]M)? - (.*)$/.exec(line)?.[1];
      if (progress !== undefined) {
        listing = progress.startsWith('Projects in this build');
        const building = /^Building project '(.+)'\.\.\.$/.exec(progress);
        if (building) {
          built += 1;
          say(`build: ${projectName(building[1])} (tsc)…`);
        }
        return;
      }
      if (line.trim() === '' || (listing && /^\s+\* /.test(line))) return;
      listing = false;
      process.stdout.write(`${line}\n`); // a compiler error
    });
    child.on('close', (code) => resolve({ code: code ?? 1, built }));
  });
}

const started = Date.now();
say('build: compiling the packages (tsc -b, incremental)…');
const { code, built: tscBuilt } = await tscBuild();
let built = tscBuilt;
let ok = code === 0;
if (ok) {
  try {
    await buildCjs({ say });
    if (await buildDashboard({ say })) built += 1;
  } catch (err) {
    process.stderr.write(`${err.message}\n`);
    ok = false;
  }
}
const seconds = ((Date.now() - started) / 1000).toFixed(1);
if (ok) {
  say(`build: done in ${seconds} s (${built ? `${built} package${built === 1 ? '' : 's'} rebuilt` : 'everything was up to date'})`);
} else if (fromInstall) {
  process.stderr.write(
    'build: failed (above); dependencies are installed. Fix the errors and run `pnpm build`; until then the titan bins say they are not built.\n',
  );
} else {
  process.stderr.write(`build: failed after ${seconds} s\n`);
  process.exit(1);
}

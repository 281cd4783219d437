#!/usr/bin/env node
/**
 * `node scripts/deploy.mjs <service> <out-dir>`: writes a self-contained, production-only copy
 * of one service (its dist, its runtime dependencies, nothing else) to <out-dir> with
 * `pnpm deploy --prod`. The Dockerfiles and the deploy test both use this script, so what
 * the test proves is what the images contain. Build first (`pnpm build`).
 */
import { execFileSync } from 'node:child_process';
import { existsSync, rmSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const SERVICES = ['instance-manager', 'coordinator', 'agent'];
const root = fileURLToPath(new URL('..', import.meta.url));

export function deploy(service, outDir) {
  if (!SERVICES.includes(service)) throw new Error(`unknown service "${service}"; expected one of ${SERVICES.join(', ')}`);
  const bin = join(root, 'packages', service, 'dist/bin.js');
  if (!existsSync(bin)) throw new Error(`${bin} is missing: run \`pnpm build\` first`);
  const out = resolve(outDir);
  rmSync(out, { recursive: true, force: true });
  execFileSync('pnpm', ['--filter', `@titancompute/${service}`, 'deploy', '--prod', '--config.confirmModulesPurge=false', out], {
    cwd: root,
    stdio: ['ignore', 'inherit', 'inherit'],
    env: { ...process.env, CI: 'true' },
  });
  if (!existsSync(join(out, 'dist/bin.js'))) throw new Error(`deploy of ${service} produced no dist/bin.js in ${out}`);
  return out;
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const [service, outDir] = process.argv.slice(2);
  if (!service || !outDir) {
    console.error('usage: node scripts/deploy.mjs <instance-manager|coordinator|agent> <out-dir>');
    process.exit(2);
  }
  try {
    console.log(`deployed ${service} to ${deploy(service, outDir)}`);
  } catch (err) {
    console.error(err.message);
    process.exit(1);
  }
}

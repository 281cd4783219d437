/** Helpers shared by the benchmarks (bench/*.bench.mjs), one copy each. See bench/lib/README.md. */
export { freePort } from '@titancompute/test-support/free-port';
export { startListeningChild } from './child.mjs';
export { createLog } from './log.mjs';
export { importFromPackage, repoRoot, resolveFromPackage } from './packages.mjs';
export { median, percentile } from './stats.mjs';
export { runUnaryLoad } from './unary-load.mjs';

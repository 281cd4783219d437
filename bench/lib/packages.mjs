/**
 * Where the benchmarks find the repository and the dependencies of its packages: the repo root
 * depends on few libraries itself, so `nice-grpc`, `@grpc/grpc-js`, `pg` … are imported from the
 * package that depends on them.
 */
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

/** Absolute path of the repository root (with a trailing separator). */
export const repoRoot = fileURLToPath(new URL('../..', import.meta.url));

/**
 * Resolves `specifier` the way `packages/<pkg>` would.
 *
 * @param {string} pkg - Folder under `packages/`, e.g. `coordinator`.
 * @param {string} specifier - e.g. `nice-grpc`.
 * @returns {string} The resolved file path.
 */
export function resolveFromPackage(pkg, specifier) {
  return createRequire(join(repoRoot, 'packages', pkg, 'package.json')).resolve(specifier);
}

/**
 * Imports `specifier` the way `packages/<pkg>` would (e.g. `importFromPackage('agent', 'nice-grpc')`).
 *
 * @param {string} pkg - Folder under `packages/`.
 * @param {string} specifier - The module to import.
 * @returns {Promise<any>} The module namespace.
 */
export function importFromPackage(pkg, specifier) {
  return import(pathToFileURL(resolveFromPackage(pkg, specifier)).href);
}

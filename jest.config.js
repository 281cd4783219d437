/**
 * One jest run for the whole monorepo: ESM + @swc/jest (type checking is `pnpm typecheck`).
 * Workspace packages resolve to their TypeScript sources so tests never need a build of
 * their dependencies; the end-to-end tests start the built bins themselves.
 * @type {import('jest').Config}
 */
export default {
  testEnvironment: 'node',
  extensionsToTreatAsEsm: ['.ts'],
  testMatch: ['<rootDir>/packages/*/src/**/*.test.ts', '<rootDir>/e2e/**/*.test.ts'],
  transform: {
    '^.+\\.ts$': ['@swc/jest', { jsc: { parser: { syntax: 'typescript' }, target: 'es2022' }, module: { type: 'es6' } }],
  },
  moduleNameMapper: {
    '^@titancompute/([a-z-]+)$': '<rootDir>/packages/$1/src/index.ts',
    '^@titancompute/test-support/([a-z-]+)$': '<rootDir>/packages/test-support/src/$1.ts',
    '^(\\.{1,2}/.*)\\.js$': '$1',
  },
  testTimeout: 30000,
  maxWorkers: 2,
};

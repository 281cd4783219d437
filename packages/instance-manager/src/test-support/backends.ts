import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { postgresAvailable, TEST_PG_URL } from '@titancompute/test-support/postgres';
import type { StorageSpec } from '../store/store.js';

/** A fresh schema on the test database; `drop()` removes it and everything in it. */
export function createTestSchema(): { schema: string; spec: StorageSpec; drop(): Promise<void> } {
  const schema = `titan_test_${randomBytes(6).toString('hex')}`;
  return {
    schema,
    spec: { kind: 'postgres', url: TEST_PG_URL, schema },
    async drop() {
      const client = new pg.Client({ connectionString: TEST_PG_URL });
      await client.connect();
      try {
        await client.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
      } finally {
        await client.end();
      }
    },
  };
}

/** A storage backend the behavioural suite runs against. */
export interface TestBackend {
  name: 'memory' | 'sqlite' | 'postgres';
  /** A fresh, empty storage (its own temp dir or schema). */
  fresh(): StorageSpec;
  /** Removes everything `fresh` created. */
  cleanup(): Promise<void>;
}

/** memory, sqlite and (when reachable) postgres backends. */
export async function testBackends(suite: string): Promise<TestBackend[]> {
  const dirs: string[] = [];
  const schemas: Array<{ drop(): Promise<void> }> = [];
  const backends: TestBackend[] = [
    { name: 'memory', fresh: () => ({ kind: 'memory' }), cleanup: async () => undefined },
    {
      name: 'sqlite',
      fresh: () => {
        const dir = mkdtempSync(join(tmpdir(), 'titan-im-'));
        dirs.push(dir);
        return { kind: 'sqlite', dataDir: dir };
      },
      cleanup: async () => {
        for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
      },
    },
  ];
  if (await postgresAvailable(suite)) {
    backends.push({
      name: 'postgres',
      fresh: () => {
        const s = createTestSchema();
        schemas.push(s);
        return s.spec;
      },
      cleanup: async () => {
        for (const s of schemas.splice(0)) await s.drop();
      },
    });
  }
  return backends;
}

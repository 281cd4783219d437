import { StorageError } from '../errors.js';
import { createMemoryStore } from './memory-store.js';
import { createPostgresStore } from './postgres-store.js';
import { createSqliteStore } from './sqlite-store.js';
import type { StorageSpec, Store } from './store.js';

/**
 * Parses the `--storage` value: `memory`, `sqlite` (in `dataDir`) or a `postgres://` /
 * `postgresql://` URL.
 */
export function parseStorageSpec(value: string, dataDir: string): StorageSpec {
  if (value === 'memory') return { kind: 'memory' };
  if (value === 'sqlite') return { kind: 'sqlite', dataDir };
  if (/^postgres(ql)?:\/\//.test(value)) return { kind: 'postgres', url: value };
  throw new StorageError(`unknown storage ${JSON.stringify(value)}: expected memory, sqlite or a postgres:// URL`, {
    backend: 'memory',
    operation: 'parse',
  });
}

/** Opens (and migrates) the store a {@link StorageSpec} names. */
export async function createStore(spec: StorageSpec, hooks: { onError?: (err: Error) => void } = {}): Promise<Store> {
  switch (spec.kind) {
    case 'memory':
      return createMemoryStore();
    case 'sqlite':
      return createSqliteStore({ dataDir: spec.dataDir });
    case 'postgres':
      return createPostgresStore({
        url: spec.url,
        ...(spec.schema ? { schema: spec.schema } : {}),
        ...(hooks.onError ? { onError: hooks.onError } : {}),
      });
  }
}

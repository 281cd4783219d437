import { afterEach, describe, expect, it } from '@jest/globals';
import { mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ReplayStoreError } from '../errors.js';
import { createReplayCache, openPersistentReplayCache, REPLAY_DB_FILE, type ReplayCache } from './replay-cache.js';

const dirs: string[] = [];
const open: ReplayCache[] = [];
afterEach(() => {
  for (const c of open.splice(0)) c.close();
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});
function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'titan-replay-'));
  dirs.push(dir);
  return dir;
}
function persistent(options: Parameters<typeof openPersistentReplayCache>[0]): ReplayCache {
  const cache = openPersistentReplayCache(options);
  open.push(cache);
  return cache;
}

describe('openPersistentReplayCache', () => {
  it('remembers used jtis across a close and reopen of the same data dir (a restart), in a 0600 file', () => {
    const dataDir = tempDir();
    const exp = Date.now() + 60_000;
    const first = openPersistentReplayCache({ dataDir });
    expect(first.claim('jti-1', exp)).toBe('ok');
    expect(first.claim('jti-1', exp)).toBe('replayed');
    first.close();
    const second = persistent({ dataDir });
    expect(second.claim('jti-1', exp)).toBe('replayed');
    expect(second.claim('jti-2', exp)).toBe('ok');
    expect(second.size).toBe(2);
    expect(statSync(join(dataDir, REPLAY_DB_FILE)).mode & 0o777).toBe(0o600);
  });

  it('two caches on one file (two processes) never both accept a jti', () => {
    const dataDir = tempDir();
    const a = persistent({ dataDir });
    const b = persistent({ dataDir });
    const exp = Date.now() + 60_000;
    const outcomes = [a.claim('shared', exp), b.claim('shared', exp), a.claim('shared', exp)];
    expect(outcomes.filter((o) => o === 'ok')).toHaveLength(1);
  });

  it('forgets ids once expired (pruned) and is bounded: full refuses, never forgets a live id early', () => {
    const dataDir = tempDir();
    let now = 1_000_000;
    const cache = persistent({ dataDir, maxEntries: 3, now: () => now, pruneIntervalMs: 0 });
    expect(cache.claim('a', now + 100)).toBe('ok');
    expect(cache.claim('b', now + 100)).toBe('ok');
    expect(cache.claim('c', now + 5000)).toBe('ok');
    expect(cache.claim('d', now + 5000)).toBe('full');
    expect(cache.claim('a', now + 100)).toBe('replayed');
    now += 200;
    expect(cache.claim('d', now + 5000)).toBe('ok');
    expect(cache.size).toBe(2);
    expect(cache.claim('c', now + 5000)).toBe('replayed');
    expect(cache.claim('a', now + 100)).toBe('ok');
  });

  it('refuses to open a file that is not a database (the agent must not start without its used-token list)', () => {
    const dataDir = tempDir();
    writeFileSync(join(dataDir, REPLAY_DB_FILE), 'this is not sqlite '.repeat(100));
    expect(() => openPersistentReplayCache({ dataDir })).toThrow(ReplayStoreError);
    expect(() => openPersistentReplayCache({ dataDir })).toThrow(/cannot open the used-token store/);
  });

  it('says when claims are on disk: once for all the claims made before (group commit), at once when nothing is pending', async () => {
    const dataDir = tempDir();
    const cache = persistent({ dataDir });
    const exp = Date.now() + 60_000;
    await expect(cache.whenDurable()).resolves.toBeUndefined();
    for (const jti of ['a', 'b', 'c']) expect(cache.claim(jti, exp)).toBe('ok');
    let flushed = false;
    const waits = [cache.whenDurable(), cache.whenDurable()];
    void Promise.all(waits).then(() => (flushed = true));
    expect(flushed).toBe(false);
    await Promise.all(waits);
    expect(cache.claim('d', exp)).toBe('ok');
    await cache.whenDurable();
    // A replay (nothing new claimed) has nothing to wait for.
    expect(cache.claim('d', exp)).toBe('replayed');
    await expect(cache.whenDurable()).resolves.toBeUndefined();
  });

  it('flushes what was claimed when closed: waiting callers are answered, later ones refused', async () => {
    const dataDir = tempDir();
    const cache = openPersistentReplayCache({ dataDir });
    const exp = Date.now() + 60_000;
    expect(cache.claim('x', exp)).toBe('ok');
    const waiting = cache.whenDurable();
    cache.close();
    await expect(waiting).resolves.toBeUndefined();
    await expect(cache.whenDurable()).rejects.toThrow(ReplayStoreError);
    const reopened = persistent({ dataDir });
    expect(reopened.claim('x', exp)).toBe('replayed');
  });

  it('throws ReplayStoreError when used after close', () => {
    const cache = openPersistentReplayCache({ dataDir: tempDir() });
    cache.close();
    expect(() => cache.claim('x', Date.now() + 1000)).toThrow(ReplayStoreError);
  });
});

describe('createReplayCache (in memory)', () => {
  it('accepts each id once until it expires, bounded', () => {
    let now = 0;
    const cache = createReplayCache({ maxEntries: 1, now: () => now });
    expect(cache.claim('a', 100)).toBe('ok');
    expect(cache.claim('a', 100)).toBe('replayed');
    expect(cache.claim('b', 100)).toBe('full');
    now = 2000;
    expect(cache.claim('b', 3000)).toBe('ok');
  });

  it('has nothing to flush', async () => {
    const cache = createReplayCache();
    cache.claim('a', Date.now() + 1000);
    await expect(cache.whenDurable()).resolves.toBeUndefined();
  });
});

import { describe, expect, it } from '@jest/globals';
import { readFileSync, statSync } from 'node:fs';
import { JoinTokenError } from './errors.js';
import { checkJoinToken, joinTokenPath, resolveJoinToken } from './join-token.js';
import { makeTempDir, startTestCoordinator } from './test-support/test-coordinator.js';

describe('join token', () => {
  it('is generated into <data-dir>/join-token with mode 0600 when unset, and reused after a restart', async () => {
    const dataDir = makeTempDir();
    const first = await startTestCoordinator({ dataDir, joinToken: undefined });
    const token = first.coordinator.joinToken;
    await first.stop();
    expect(token.length).toBeGreaterThanOrEqual(32);
    expect(readFileSync(joinTokenPath(dataDir), 'utf8').trim()).toBe(token);
    expect(statSync(joinTokenPath(dataDir)).mode & 0o777).toBe(0o600);
    const second = await startTestCoordinator({ dataDir, joinToken: undefined });
    expect(second.coordinator.joinToken).toBe(token);
    await second.stop(true);
  });

  it('a configured token wins over the file', async () => {
    const dataDir = makeTempDir();
    await resolveJoinToken(dataDir, undefined);
    expect(await resolveJoinToken(dataDir, 'configured')).toEqual({ token: 'configured', source: 'configured' });
  });

  it('accepts only "Bearer <token>"', () => {
    expect(() => checkJoinToken('Bearer s3cret', 's3cret')).not.toThrow();
    for (const value of [undefined, '', 's3cret', 'Bearer nope', 'Bearer s3cret-longer']) {
      expect(() => checkJoinToken(value, 's3cret')).toThrow(JoinTokenError);
    }
  });
});

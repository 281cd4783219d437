/**
 * InstanceManagerClient against a real instance manager (SQLite): typed calls, and watch()
 * resuming across a server restart without losing or repeating an event.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from '@jest/globals';
import { freePort, startInstanceManager } from '@titancompute/test-support';
import { InstanceManagerClient } from './instance-manager-client.js';
import type { InstanceEvent } from './types.js';

const dataDir = mkdtempSync(join(tmpdir(), 'titan-imc-'));
afterAll(() => rmSync(dataDir, { recursive: true, force: true }));

describe('InstanceManagerClient against a real instance manager', () => {
  it('typed Try/Post/Get calls, and watch() resumes after a restart from the last sequence it saw', async () => {
    const port = await freePort();
    const start = () => startInstanceManager({ host: '127.0.0.1', port, dataDir, storage: 'sqlite', logLevel: 'silent' });
    let server = await start();
    const im = new InstanceManagerClient({ address: `127.0.0.1:${port}` });
    const watchAbort = new AbortController();
    const seen: InstanceEvent[] = [];
    const reconnects: number[] = [];
    const watching = (async () => {
      for await (const event of im.watch({ signal: watchAbort.signal, reconnectDelayMs: 300, onReconnect: (i) => reconnects.push(i.fromSequence) })) {
        seen.push(event);
      }
    })();
    const waitForEvent = async (pred: (e: InstanceEvent) => boolean) => {
      for (let i = 0; i < 100 && !seen.some(pred); i++) await new Promise((r) => setTimeout(r, 50));
      expect(seen.some(pred)).toBe(true);
    };

    try {
      expect(await im.addInstance({ id: 'parent-1', type: 'BROWSER_BACKEND', hostname: 'h1' })).toMatchObject({ success: true });
      expect(await im.addInstance({ id: 'child-1', type: 'CHROME_BROWSER', hostname: 'h1' })).toMatchObject({ success: true });
      expect(await im.addChild('parent-1', 'child-1')).toMatchObject({ success: true });
      await im.postGpuMetrics('parent-1', { usedMemoryBytes: 10, totalMemoryBytes: 100, utilizationPercent: 50 });
      expect(await im.getGpuMetrics('parent-1')).toMatchObject({ usedMemoryBytes: 10, totalMemoryBytes: 100 });
      expect((await im.getChildren('parent-1')).map((c) => c.id)).toEqual(['child-1']);
      await waitForEvent((e) => e.type === 'CHILD_ADDED' && e.instanceId === 'parent-1');

      // Restart the server; add an instance before the client's resubscription delay is over.
      await server.stop();
      server = await start();
      expect(await im.addInstance({ id: 'after-restart', type: 'WARMPOOL_PROXY', hostname: 'h2' })).toMatchObject({ success: true });
      await waitForEvent((e) => e.instanceId === 'after-restart' && e.type === 'ADDED');
      expect(reconnects.length).toBeGreaterThanOrEqual(1);

      const added = seen.filter((e) => e.type === 'ADDED').map((e) => e.instanceId);
      expect(added).toEqual(['parent-1', 'child-1', 'after-restart']);
      const sequences = seen.map((e) => e.sequence);
      expect(new Set(sequences).size).toBe(sequences.length);
      expect([...sequences].sort((a, b) => a - b)).toEqual(sequences);

      expect((await im.killInstance('parent-1', 'test')).killedInstanceIds.sort()).toEqual(['child-1', 'parent-1']);
      await waitForEvent((e) => e.type === 'REMOVED' && e.instanceId === 'child-1');
    } finally {
      watchAbort.abort();
      await watching;
      im.close();
      await server.stop();
    }
  }, 30_000);
});

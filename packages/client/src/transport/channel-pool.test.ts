import { describe, expect, it } from '@jest/globals';
import { ClientConfigError } from '../errors.js';
import { InstanceManagerClient } from '../instance-manager-client.js';
import { TitanClient } from '../titan-client.js';
import { createChannelPool } from './channel-pool.js';

const MISSING_CA = '/nonexistent/titan-ca.pem';

describe('a channel that cannot be made names the server it was for', () => {
  it('the pool labels the ClientConfigError with the target it was given', () => {
    const pool = createChannelPool({ caFile: MISSING_CA });
    for (const target of ['coordinator', 'agent', 'instance-manager'] as const) {
      let error: unknown;
      try {
        pool.channel('127.0.0.1:1', target);
      } catch (e) {
        error = e;
      }
      expect(error).toBeInstanceOf(ClientConfigError);
      expect((error as ClientConfigError).context).toMatchObject({ target, address: '127.0.0.1:1' });
      expect((error as ClientConfigError).message).toContain(MISSING_CA);
    }
  });

  it('the clients pass the real target: coordinator, instance-manager (was always "agent")', async () => {
    const client = new TitanClient({ coordinator: '127.0.0.1:1', tls: { caFile: MISSING_CA } });
    const error = await client.status().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ClientConfigError);
    expect((error as ClientConfigError).context).toMatchObject({ target: 'coordinator', address: '127.0.0.1:1' });
    client.close();
    expect(() => new InstanceManagerClient({ address: '127.0.0.1:2', tls: { caFile: MISSING_CA } })).toThrow(
      expect.objectContaining({ context: expect.objectContaining({ target: 'instance-manager', address: '127.0.0.1:2' }) }),
    );
  });
});

import { describe, expect, it } from '@jest/globals';
import { COMMON_DEFAULTS, loadConfig } from '@titancompute/server-kit';
import { defaultOutageGapMs, INSTANCE_MANAGER_DEFAULTS, instanceManagerOptionSpec } from './config.js';

describe('titan-instance-manager config', () => {
  it('shows the defaults of INSTANCE_MANAGER_DEFAULTS in --help, in the form the flags parse', () => {
    const s = instanceManagerOptionSpec;
    expect([s.port, s.dataDir, s.storage, s.staleTimeoutMs, s.sweepIntervalMs, s.eventRetention, s.shutdownTimeoutMs].map((o) => o.default)).toEqual([
      '50050',
      './.titan/instance-manager',
      'sqlite',
      '30s',
      '1s',
      '100000',
      '10s',
    ]);
  });

  it('applies the same defaults from the flags as startInstanceManager does (one source)', () => {
    const { maxSubscriberQueue: _queue, eventPollIntervalMs: _poll, minOutageGapMs: _gap, ...flagDefaults } = INSTANCE_MANAGER_DEFAULTS;
    expect(loadConfig(instanceManagerOptionSpec, { argv: [], env: {}, name: 'titan-instance-manager' })).toMatchObject(flagDefaults);
    expect(flagDefaults).toMatchObject(COMMON_DEFAULTS);
    expect([defaultOutageGapMs(INSTANCE_MANAGER_DEFAULTS.sweepIntervalMs), defaultOutageGapMs(2000)]).toEqual([3000, 6000]);
  });
});

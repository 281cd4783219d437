import { describe, expect, it } from '@jest/globals';
import { AgentConfigError } from '../errors.js';
import { parseCoordinatorAddresses, resolveCoordinatorTargets, type LookupAll } from './coordinator-addresses.js';

/** A resolver that knows `records` and fails (ENOTFOUND) for any other name; it counts its calls. */
function fakeLookup(records: Record<string, Array<{ address: string; family: number }>>): LookupAll & { calls: string[] } {
  const calls: string[] = [];
  const lookup = async (hostname: string) => {
    calls.push(hostname);
    const found = records[hostname];
    if (!found) throw Object.assign(new Error(`getaddrinfo ENOTFOUND ${hostname}`), { code: 'ENOTFOUND' });
    return found;
  };
  return Object.assign(lookup, { calls });
}

describe('coordinator addresses', () => {
  it('parses one host:port as it is, and a comma-separated list in order, trimmed, without duplicates', () => {
    expect(parseCoordinatorAddresses('localhost:50051')).toEqual(['localhost:50051']);
    expect(parseCoordinatorAddresses('a:50051, b:50052 ,c:50053,a:50051')).toEqual(['a:50051', 'b:50052', 'c:50053']);
    expect(parseCoordinatorAddresses('[::1]:50051,http://10.0.0.1:50051')).toEqual(['[::1]:50051', 'http://10.0.0.1:50051']);
  });

  it('refuses an empty list and an entry that is not host:port, naming it', () => {
    expect(() => parseCoordinatorAddresses(' , ')).toThrow(AgentConfigError);
    expect(() => parseCoordinatorAddresses('a:50051,b')).toThrow(/got "b"/);
    expect(() => parseCoordinatorAddresses('a:50051,b:99999')).toThrow(/got "b:99999"/);
  });

  it('expands a name with several addresses into one target per address (IPv6 bracketed), keeping the name for TLS', async () => {
    const lookup = fakeLookup({
      coordinators: [
        { address: '10.0.0.1', family: 4 },
        { address: '10.0.0.2', family: 4 },
        { address: 'fd00::3', family: 6 },
      ],
    });
    expect(await resolveCoordinatorTargets(['coordinators:50051'], lookup)).toEqual([
      { address: '10.0.0.1:50051', serverName: 'coordinators' },
      { address: '10.0.0.2:50051', serverName: 'coordinators' },
      { address: '[fd00::3]:50051', serverName: 'coordinators' },
    ]);
  });

  it('keeps IP literals, a name with one address and a name that does not resolve as configured; drops duplicates', async () => {
    const lookup = fakeLookup({
      single: [{ address: '10.0.0.9', family: 4 }],
      pair: [
        { address: '127.0.0.1', family: 4 },
        { address: '127.0.0.1', family: 4 },
      ],
    });
    const targets = await resolveCoordinatorTargets(['127.0.0.1:1', '[::1]:2', 'single:3', 'missing:4', 'pair:5', '127.0.0.1:1'], lookup);
    expect(targets).toEqual([
      { address: '127.0.0.1:1', serverName: undefined },
      { address: '[::1]:2', serverName: undefined },
      { address: 'single:3', serverName: undefined },
      { address: 'missing:4', serverName: undefined },
      { address: 'pair:5', serverName: undefined },
    ]);
    // IP literals are never looked up.
    expect(lookup.calls.sort()).toEqual(['missing', 'pair', 'single']);
  });

  it('reads the records again on every call (each reconnection)', async () => {
    const records: Record<string, Array<{ address: string; family: number }>> = {
      c: [
        { address: '10.0.0.1', family: 4 },
        { address: '10.0.0.2', family: 4 },
      ],
    };
    const lookup = fakeLookup(records);
    expect((await resolveCoordinatorTargets(['c:1'], lookup)).map((t) => t.address)).toEqual(['10.0.0.1:1', '10.0.0.2:1']);
    records.c = [
      { address: '10.0.0.2', family: 4 },
      { address: '10.0.0.3', family: 4 },
    ];
    expect((await resolveCoordinatorTargets(['c:1'], lookup)).map((t) => t.address)).toEqual(['10.0.0.2:1', '10.0.0.3:1']);
    expect(lookup.calls).toEqual(['c', 'c']);
  });
});

import { lookup as dnsLookup } from 'node:dns/promises';
import { isIP } from 'node:net';
import { AgentConfigError } from '../errors.js';

/** `dns.lookup(name, { all: true })`: every address a name resolves to (injectable in tests). */
export type LookupAll = (hostname: string) => Promise<ReadonlyArray<{ address: string; family: number }>>;

/** The resolver the agent uses by default: the system's (`/etc/hosts`, then DNS), every address. */
export const systemLookupAll: LookupAll = (hostname) => dnsLookup(hostname, { all: true });

/** One coordinator the agent may dial. */
export interface CoordinatorTarget {
  /** `host:port` dialled (an address of a name that resolved to several, or the entry as configured). */
  address: string;
  /** The host name it came from when a name was expanded into its addresses (checked on TLS certificates); else undefined. */
  serverName: string | undefined;
}

/** `host` and `port` of a `host:port` entry (an optional URL scheme dropped, IPv6 in brackets). */
function splitHostPort(entry: string): { host: string; port: string } | undefined {
  const bare = entry.replace(/^(https?|grpcs?):\/\//, '');
  const match = /^(\[[0-9A-Fa-f:.]+\]|[^\s:[\]/,]+):(\d{1,5})$/.exec(bare);
  if (!match || Number(match[2]) > 65535) return undefined;
  return { host: match[1]!, port: match[2]! };
}

/**
 * The coordinator addresses of `--coordinator` (TITAN_COORDINATOR): one `host:port`, or several
 * separated by commas (`a:50051,b:50051,c:50051`; spaces around them are ignored, duplicates
 * dropped). Throws {@link AgentConfigError} naming the first entry that is not `host:port`.
 *
 * @example
 * ```ts
 * parseCoordinatorAddresses('c1:50051, c2:50051'); // ['c1:50051', 'c2:50051']
 * ```
 */
export function parseCoordinatorAddresses(value: string): string[] {
  const entries = value
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '');
  if (entries.length === 0) throw new AgentConfigError('coordinator: expected host:port (or several, comma-separated), got nothing', { option: 'coordinator' });
  for (const entry of entries) {
    if (!splitHostPort(entry)) {
      throw new AgentConfigError(`coordinator: expected host:port (or several, comma-separated), got ${JSON.stringify(entry)}`, {
        option: 'coordinator',
        got: entry,
      });
    }
  }
  return [...new Set(entries)];
}

/**
 * The coordinators to try, in order: each entry of `entries` as it is, except a host name that
 * resolves to several addresses (`lookup`, i.e. `dns.lookup(name, { all: true })`), which becomes
 * one target per address (`ip:port`, in the resolver's order, remembering the name for TLS). A
 * name that resolves to one address, or that does not resolve now, stays as configured (gRPC
 * resolves it when dialling, and reports its own error). Called on every (re)connection, so a
 * name's records are read again each time. Never throws.
 */
export async function resolveCoordinatorTargets(entries: readonly string[], lookup: LookupAll = systemLookupAll): Promise<CoordinatorTarget[]> {
  const targets: CoordinatorTarget[] = [];
  const seen = new Set<string>();
  const add = (address: string, serverName: string | undefined) => {
    if (seen.has(address)) return;
    seen.add(address);
    targets.push({ address, serverName });
  };
  const resolved = await Promise.all(
    entries.map(async (entry) => {
      const parts = splitHostPort(entry);
      if (!parts || parts.host.startsWith('[') || isIP(parts.host) !== 0) return { entry, addresses: [] as string[] };
      try {
        const found = await lookup(parts.host);
        const addresses = [...new Set(found.map((a) => (a.family === 6 || a.address.includes(':') ? `[${a.address}]` : a.address)))];
        return { entry, host: parts.host, addresses: addresses.map((a) => `${a}:${parts.port}`) };
      } catch {
        return { entry, addresses: [] as string[] };
      }
    }),
  );
  for (const r of resolved) {
    if (r.addresses.length <= 1) add(r.entry, undefined);
    else for (const address of r.addresses) add(address, r.host);
  }
  return targets;
}

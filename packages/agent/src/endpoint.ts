import os from 'node:os';
import { randomUUID } from 'node:crypto';

/** True for a `host:port` (optionally with a URL scheme) on the loopback interface; for a comma-separated list, when every one is. */
export function isLoopbackAddress(address: string): boolean {
  const entries = address
    .split(',')
    .map((a) => a.trim())
    .filter((a) => a !== '');
  return entries.length > 0 && entries.every((a) => /^(localhost|127\.|\[::1\]|::1)/.test(a.replace(/^(https?|grpcs?):\/\//, '')));
}

/** The id an agent takes when none is given: `<hostname>-<port>` (hostname cleaned to the id's alphabet). */
export function defaultAgentId(port: number): string {
  return `${
    os
      .hostname()
      .replace(/[^A-Za-z0-9._:-]/g, '-')
      .slice(0, 100) || randomUUID().slice(0, 8)
  }-${port}`;
}

/** What {@link resolveEndpoint} needs. */
export interface EndpointInputs {
  /** The listen address. */
  host: string;
  /** The port the server got. */
  port: number;
  /** The host clients dial, when given. */
  publicHost?: string | undefined;
  /** The coordinator's `host:port`, or several comma-separated (loopback coordinators mean a local cluster). */
  coordinator: string;
}

/**
 * The `host:port` clients dial: `publicHost`, else the listen host, or for a wildcard listen
 * host 127.0.0.1 when the coordinator is on loopback, else the machine's hostname. IPv6 hosts
 * are bracketed.
 */
export function resolveEndpoint({ host, port, publicHost, coordinator }: EndpointInputs): string {
  const wildcard = host === '0.0.0.0' || host === '::' || host === '[::]';
  const dialHost = publicHost ?? (wildcard ? (isLoopbackAddress(coordinator) ? '127.0.0.1' : os.hostname()) : host);
  return `${dialHost.includes(':') && !dialHost.startsWith('[') ? `[${dialHost}]` : dialHost}:${port}`;
}

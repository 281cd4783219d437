import type { TlsOptions } from '../types.js';

/** Where the CLI writes and what it reads; injected so tests can run it in-process. */
export interface CliIo {
  stdout: { write(chunk: string): unknown; isTTY?: boolean };
  /** `columns` is the terminal width when stderr is a TTY (0 or missing: unknown, no spinner). */
  stderr: { write(chunk: string): unknown; isTTY?: boolean; columns?: number };
  /** Environment variables (TITAN_COORDINATOR, TITAN_INSTANCE_MANAGER, TITAN_TLS_*). */
  env: Record<string, string | undefined>;
  /** Aborted on Ctrl-C: cancels the running command. */
  signal?: AbortSignal;
}

/** Global options shared by every command. */
export interface GlobalOptions {
  coordinator: string;
  instanceManager: string;
  tlsCa?: string;
  tlsCert?: string;
  tlsKey?: string;
  tlsServerName?: string;
  json?: boolean;
  timeout?: number;
}

/** TLS options from the global flags, or undefined for plaintext. */
export function tlsFromOptions(o: GlobalOptions): TlsOptions | undefined {
  if (!o.tlsCa && !o.tlsCert && !o.tlsKey && !o.tlsServerName) return undefined;
  return {
    ...(o.tlsCa ? { caFile: o.tlsCa } : {}),
    ...(o.tlsCert ? { certFile: o.tlsCert } : {}),
    ...(o.tlsKey ? { keyFile: o.tlsKey } : {}),
    ...(o.tlsServerName ? { serverName: o.tlsServerName } : {}),
  };
}

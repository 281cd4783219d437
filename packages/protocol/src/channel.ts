import { readFileSync } from 'node:fs';
import { ChannelCredentials, createChannel, type Channel, type ChannelOptions } from 'nice-grpc';
import { TlsConfigError } from './errors.js';

/** TLS settings of a client. Files are read once, when the channel is made. */
export interface ClientTlsOptions {
  /** CA bundle (PEM) that signed the server's certificate. Default: the system roots. */
  caFile?: string;
  /** Client certificate (PEM), for mTLS. */
  certFile?: string;
  /** Client private key (PEM), for mTLS. */
  keyFile?: string;
  /** Override the name checked against the server certificate (e.g. when dialing an IP). */
  serverName?: string;
}

/** Reads a PEM file, or throws {@link TlsConfigError} naming it. */
export function readPemFile(file: string, role: 'cert' | 'key' | 'ca'): Buffer {
  try {
    return readFileSync(file);
  } catch (cause) {
    throw new TlsConfigError(`cannot read TLS ${role} file ${file}: ${(cause as Error).message}`, { file, role }, { cause });
  }
}

/** Builds channel credentials from {@link ClientTlsOptions}. */
export function createClientCredentials(tls: ClientTlsOptions): ChannelCredentials {
  if ((tls.certFile === undefined) !== (tls.keyFile === undefined)) {
    throw new TlsConfigError('client TLS needs both certFile and keyFile, or neither', {
      file: tls.certFile ?? tls.keyFile ?? '',
      role: tls.certFile ? 'key' : 'cert',
    });
  }
  return ChannelCredentials.createSsl(
    tls.caFile ? readPemFile(tls.caFile, 'ca') : null,
    tls.keyFile ? readPemFile(tls.keyFile, 'key') : null,
    tls.certFile ? readPemFile(tls.certFile, 'cert') : null,
  );
}

/** Options of {@link createTitanChannel}. */
export interface TitanChannelOptions {
  /** Use TLS (or mTLS with a client certificate). Plaintext when absent. */
  tls?: ClientTlsOptions;
  /** Extra grpc-js channel options. */
  channelOptions?: ChannelOptions;
}

/**
 * Opens a gRPC channel to `host:port` (a `http://` or `https://` prefix is accepted),
 * plaintext or TLS.
 *
 * @example
 * ```ts
 * const channel = createTitanChannel('127.0.0.1:50051', { tls: { caFile: 'ca.pem' } });
 * ```
 */
export function createTitanChannel(address: string, options: TitanChannelOptions = {}): Channel {
  const target = address.replace(/^(https?|grpcs?):\/\//, '');
  const channelOptions: ChannelOptions = {
    'grpc.keepalive_time_ms': 30_000,
    'grpc.keepalive_timeout_ms': 10_000,
    ...(options.tls?.serverName ? { 'grpc.ssl_target_name_override': options.tls.serverName } : {}),
    ...options.channelOptions,
  };
  const credentials = options.tls ? createClientCredentials(options.tls) : ChannelCredentials.createInsecure();
  return createChannel(target, credentials, channelOptions);
}

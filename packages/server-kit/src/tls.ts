import { ServerCredentials } from '@grpc/grpc-js';
import { readPemFile, type ClientTlsOptions } from '@titancompute/protocol';
import { ConfigError } from './errors.js';

/** TLS settings of a server. With `caFile`, clients must present a certificate signed by it (mTLS). */
export interface ServerTlsOptions {
  certFile: string;
  keyFile: string;
  caFile?: string;
}

/** Server credentials: plaintext without `tls`, TLS with it, mTLS when it has a CA. */
export function createServerCredentials(tls: ServerTlsOptions | undefined): ServerCredentials {
  if (!tls) return ServerCredentials.createInsecure();
  const ca = tls.caFile ? readPemFile(tls.caFile, 'ca') : null;
  return ServerCredentials.createSsl(ca, [{ cert_chain: readPemFile(tls.certFile, 'cert'), private_key: readPemFile(tls.keyFile, 'key') }], ca !== null);
}

/**
 * Server TLS from the common options (`--tls-cert`, `--tls-key`, `--tls-ca`); undefined when
 * none is set. A certificate without a key (or the reverse) is a {@link ConfigError}.
 */
export function serverTlsFromConfig(config: {
  tlsCert?: string | undefined;
  tlsKey?: string | undefined;
  tlsCa?: string | undefined;
}): ServerTlsOptions | undefined {
  if (!config.tlsCert && !config.tlsKey) {
    if (config.tlsCa) {
      throw new ConfigError('invalid --tls-ca (TITAN_TLS_CA): mTLS needs --tls-cert and --tls-key too', {
        option: 'tls-ca',
        source: '--tls-ca',
        expected: '--tls-cert and --tls-key alongside',
      });
    }
    return undefined;
  }
  if (!config.tlsCert || !config.tlsKey) {
    const missing = config.tlsCert ? 'tls-key' : 'tls-cert';
    throw new ConfigError(
      `invalid TLS settings: --${missing} (TITAN_${missing.toUpperCase().replace('-', '_')}) is missing; TLS needs both --tls-cert and --tls-key`,
      {
        option: missing,
        source: `--${missing}`,
        expected: 'a PEM file path',
      },
    );
  }
  return { certFile: config.tlsCert, keyFile: config.tlsKey, ...(config.tlsCa ? { caFile: config.tlsCa } : {}) };
}

/**
 * TLS for a service's outgoing calls (to the coordinator or instance manager): with a server
 * certificate configured, the same CA, certificate and key are used as client credentials.
 */
export function clientTlsFromConfig(config: {
  tlsCert?: string | undefined;
  tlsKey?: string | undefined;
  tlsCa?: string | undefined;
}): ClientTlsOptions | undefined {
  if (!config.tlsCa && !config.tlsCert) return undefined;
  return {
    ...(config.tlsCa ? { caFile: config.tlsCa } : {}),
    ...(config.tlsCert && config.tlsKey ? { certFile: config.tlsCert, keyFile: config.tlsKey } : {}),
  };
}

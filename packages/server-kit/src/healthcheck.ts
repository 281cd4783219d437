#!/usr/bin/env node
/**
 * `titan-healthcheck [host:port] [service]`: asks a server's grpc.health.v1 whether it is
 * SERVING; exit 0 if so, 1 otherwise (Docker HEALTHCHECK, scripts). Default address
 * `127.0.0.1:$TITAN_PORT`. TLS: set TITAN_TLS_CA (and TITAN_TLS_CERT/TITAN_TLS_KEY for mTLS).
 */
import { createClient } from 'nice-grpc';
import { HealthDefinition, HealthCheckResponse_ServingStatus } from 'nice-grpc-server-health/lib/proto/grpc/health/v1/health.js';
import { createTitanChannel } from '@titancompute/protocol';
import { clientTlsFromConfig } from './tls.js';

const [address = `127.0.0.1:${process.env.TITAN_PORT ?? '50051'}`, service = ''] = process.argv.slice(2);
const tls = clientTlsFromConfig({ tlsCa: process.env.TITAN_TLS_CA, tlsCert: process.env.TITAN_TLS_CERT, tlsKey: process.env.TITAN_TLS_KEY });
const channel = createTitanChannel(address, tls ? { tls } : {});
try {
  const { status } = await createClient(HealthDefinition, channel).check({ service }, { signal: AbortSignal.timeout(3000) });
  const name = HealthCheckResponse_ServingStatus[status] ?? String(status);
  process.stdout.write(`${address}: ${name}\n`);
  process.exitCode = status === HealthCheckResponse_ServingStatus.SERVING ? 0 : 1;
} catch (err) {
  process.stdout.write(`${address}: unreachable (${(err as Error).message})\n`);
  process.exitCode = 1;
} finally {
  channel.close();
}

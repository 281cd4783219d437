#!/usr/bin/env node
/**
 * `titan-healthcheck [host:port] [service]`: asks a server's grpc.health.v1 whether it is
 * SERVING; exit 0 if so, 1 otherwise (Docker HEALTHCHECK, scripts), 2 for bad arguments.
 * Default address `127.0.0.1:$TITAN_PORT`. TLS: set TITAN_TLS_CA (and TITAN_TLS_CERT/TITAN_TLS_KEY
 * for mTLS). `-h`/`--help` and `--version` print and exit 0.
 */
import { parseArgs } from 'node:util';
import { createClient } from 'nice-grpc';
import { HealthDefinition, HealthCheckResponse_ServingStatus } from 'nice-grpc-server-health/lib/proto/grpc/health/v1/health.js';
import { createTitanChannel } from '@titancompute/protocol';
import { readPackageVersion } from './config.js';
import { EXIT_USAGE } from './errors.js';
import { clientTlsFromConfig } from './tls.js';

const NAME = 'titan-healthcheck';
const USAGE = `Usage: ${NAME} [host:port] [service]

Asks a gRPC server's grpc.health.v1 service whether it is SERVING: exit 0 if so, 1 if not or
unreachable, 2 for bad arguments.

Arguments:
  host:port   server address (default 127.0.0.1:$TITAN_PORT, else 127.0.0.1:50051)
  service     health service name (default "": the whole server)

Options:
  -h, --help  Show this help.
  --version   Print the version.

Environment: TITAN_PORT, TITAN_TLS_CA (enables TLS), TITAN_TLS_CERT and TITAN_TLS_KEY (mTLS).
`;

function usageError(message: string): never {
  process.stderr.write(`${NAME}: ${message} (run ${NAME} --help for usage)\n`);
  process.exit(EXIT_USAGE);
}

let args: { values: { help?: boolean; version?: boolean }; positionals: string[] };
try {
  args = parseArgs({ options: { help: { type: 'boolean', short: 'h' }, version: { type: 'boolean' } }, allowPositionals: true, strict: true });
} catch (err) {
  const flag = /'([^' ]+)/.exec((err as Error).message)?.[1] ?? 'argument';
  usageError(`unknown option ${flag}`);
}
if (args.values.help) {
  process.stdout.write(USAGE);
  process.exit(0);
}
if (args.values.version) {
  process.stdout.write(`${NAME} ${readPackageVersion(import.meta.url)}\n`);
  process.exit(0);
}
if (args.positionals.length > 2) usageError(`unexpected argument ${JSON.stringify(args.positionals[2])}`);
const [address = `127.0.0.1:${process.env.TITAN_PORT ?? '50051'}`, service = ''] = args.positionals;
if (!/^(\[[^\]\s]+\]|[^\s:[\]]+):\d{1,5}$/.test(address) || Number(address.slice(address.lastIndexOf(':') + 1)) > 65535) {
  usageError(`invalid address ${JSON.stringify(address)}: expected host:port`);
}
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

import type { Command } from 'commander';
import { InstanceManagerClient } from '../../instance-manager-client.js';
import { INSTANCE_TYPES, SERVICE_TYPES } from '../../instances/instance-mapping.js';
import type { InstanceDetails, InstanceType, ServiceType } from '../../types.js';
import { Status } from 'nice-grpc-common';
import { ClientConfigError, ConnectionError, RequestFailedError } from '../../errors.js';
import { tlsFromOptions, type CliIo, type GlobalOptions } from '../context.js';
import { jsonLine, renderTable } from '../format.js';
import { parseChoice, parseIntArg } from '../parsers.js';

function connect(command: Command): { client: InstanceManagerClient; globals: GlobalOptions } {
  const globals = command.optsWithGlobals<GlobalOptions>();
  const tls = tlsFromOptions(globals);
  const client = new InstanceManagerClient({
    address: globals.instanceManager,
    ...(tls ? { tls } : {}),
    ...(globals.timeout ? { requestTimeoutMs: globals.timeout } : {}),
  });
  return { client, globals };
}

function describe(d: InstanceDetails): string {
  const lines: Array<[string, string]> = [
    ['id', d.id],
    ['type', d.type],
    ['hostname', d.hostname],
    ['address', d.address],
    ['healthy', String(d.healthy)],
    ['parent', d.parentId ?? '-'],
    ['children', d.childIds.join(', ') || '-'],
    ['services', d.services.map((s) => `${s.type}${s.port ? `:${s.port}` : ''}${s.url ? ` ${s.url}` : ''}`).join(', ') || '-'],
    ['created', new Date(d.createdAtMs).toISOString()],
    ['last health check', new Date(d.lastHealthCheckMs).toISOString()],
    ...Object.entries(d.metadata).map(([k, v]): [string, string] => [`metadata.${k}`, v]),
  ];
  return renderTable(lines.map(([k, v]) => [`${k}:`, v]));
}

/** `titan instances ls|get|watch|kill`: the instance manager. */
export function registerInstances(program: Command, io: CliIo): void {
  const instances = program.command('instances').description('list, inspect, watch and kill instances in the instance manager');

  instances
    .command('ls')
    .description('list live instances')
    .option('-t, --type <type>', `only this type (${INSTANCE_TYPES.join(', ')})`, parseChoice('--type', INSTANCE_TYPES))
    .option('--service <type>', `only instances offering this service (${SERVICE_TYPES.join(', ')})`, parseChoice('--service', SERVICE_TYPES))
    .option('--parent <id>', 'only children of this instance')
    .option('--healthy', 'only instances with a recent health check')
    .action(async (options: { type?: InstanceType; service?: ServiceType; parent?: string; healthy?: boolean }, command: Command) => {
      const { client, globals } = connect(command);
      try {
        const list = await client.listInstances(
          {
            ...(options.type ? { type: options.type } : {}),
            ...(options.service ? { serviceType: options.service } : {}),
            ...(options.parent ? { parentId: options.parent } : {}),
            healthyOnly: options.healthy ?? false,
          },
          io.signal ? { signal: io.signal } : {},
        );
        if (globals.json) {
          io.stdout.write(jsonLine(list));
          return;
        }
        const rows = [['ID', 'TYPE', 'HOSTNAME', 'ADDRESS', 'HEALTHY', 'PARENT', 'CHILDREN']];
        for (const d of list) rows.push([d.id, d.type, d.hostname, d.address || '-', d.healthy ? 'yes' : 'no', d.parentId ?? '-', String(d.childIds.length)]);
        io.stdout.write(renderTable(rows));
      } finally {
        client.close();
      }
    });

  instances
    .command('get')
    .description('show one instance')
    .argument('<id>', 'instance id')
    .action(async (id: string, _options: unknown, command: Command) => {
      const { client, globals } = connect(command);
      try {
        const d = await client.getInstance(id, io.signal ? { signal: io.signal } : {});
        io.stdout.write(globals.json ? jsonLine(d) : describe(d));
      } finally {
        client.close();
      }
    });

  instances
    .command('watch')
    .description('stream instance events until Ctrl-C (resumes after dropped connections)')
    .option('-t, --type <type>', `only this instance type (${INSTANCE_TYPES.join(', ')}); repeatable`, (v: string, prev: InstanceType[] | undefined) => [
      ...(prev ?? []),
      parseChoice('--type', INSTANCE_TYPES)(v),
    ])
    .option('--id <id>', 'only this instance; repeatable', (v: string, prev: string[] | undefined) => [...(prev ?? []), v])
    .option('--from <sequence>', 'replay events after this sequence number', parseIntArg('--from'))
    .option('--snapshot', 'first list every live instance as ADDED events')
    .action(async (options: { type?: InstanceType[]; id?: string[]; from?: number; snapshot?: boolean }, command: Command) => {
      const { client, globals } = connect(command);
      try {
        // The watch itself resubscribes forever; make sure the instance manager answers at all
        // first, so a wrong address fails at once (exit 3) instead of retrying silently.
        // Only "cannot connect" is fatal here: a server without GetService can still stream events.
        await client.listInstances({}, io.signal ? { signal: io.signal } : {}).catch((error: unknown) => {
          if (error instanceof ConnectionError || error instanceof ClientConfigError) throw error;
        });
        if (io.signal?.aborted) return;
        // On stderr, so stdout carries only events.
        io.stderr.write(`watching instance events on ${client.address} (Ctrl-C to stop)…\n`);
        for await (const event of client.watch({
          instanceTypes: options.type ?? [],
          instanceIds: options.id ?? [],
          ...(options.from ? { fromSequence: options.from } : {}),
          includeSnapshot: options.snapshot ?? false,
          ...(io.signal ? { signal: io.signal } : {}),
          onReconnect: ({ attempt, fromSequence }) => io.stderr.write(`connection lost; resubscribing from sequence ${fromSequence} (attempt ${attempt})\n`),
        })) {
          if (globals.json) io.stdout.write(jsonLine(event));
          else {
            const extra = event.removalReason
              ? ` reason=${event.removalReason}`
              : event.relatedInstanceId
                ? ` related=${event.relatedInstanceId}`
                : event.service
                  ? ` service=${event.service.type}`
                  : '';
            io.stdout.write(
              `${event.snapshot ? '=' : event.sequence} ${new Date(event.timestampMs).toISOString()} ${event.type} ${event.instanceId} (${event.instanceType})${extra}\n`,
            );
          }
        }
      } finally {
        client.close();
      }
    });

  instances
    .command('kill')
    .description('kill an instance and all its descendants')
    .argument('<id>', 'instance id')
    .option('--reason <text>', 'why (recorded with the event)', 'killed with titan CLI')
    .action(async (id: string, options: { reason: string }, command: Command) => {
      const { client, globals } = connect(command);
      try {
        const result = await client.killInstance(id, options.reason, io.signal ? { signal: io.signal } : {});
        if (globals.json) io.stdout.write(jsonLine(result));
        else if (result.success) io.stdout.write(`killed ${result.killedInstanceIds.join(', ')}\n`);
        if (!result.success) {
          // success=false is control flow (unknown or already dead): exit 1, JSON output already says so.
          throw new RequestFailedError(`not killed: ${result.message}`, Status.FAILED_PRECONDITION, {
            context: { instanceId: id, reported: globals.json === true },
          });
        }
      } finally {
        client.close();
      }
    });
}

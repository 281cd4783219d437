import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import { TitanAdminClient } from '../../admin-client.js';
import { ClientConfigError } from '../../errors.js';
import type { ApiKeyInfo } from '../../types.js';
import { tlsFromOptions, type CliIo, type GlobalOptions } from '../context.js';
import { jsonLine, renderTable } from '../format.js';
import { parseIntArg, parseLifetimeArg, parseListArg } from '../parsers.js';

/** Options of `titan keys` (given before or after the subcommand). */
interface KeysOptions {
  adminToken?: string;
  adminTokenFile?: string;
}

interface CreateOptions {
  name: string;
  rpm?: number;
  tpm?: number;
  maxConcurrent?: number;
  budgetTokens?: number;
  models?: string[];
  expires?: number;
}

/** The warning printed with a new key's secret. */
export const SECRET_WARNING = 'this is the only time the secret is shown: store it now (the coordinator keeps only its hash)';

/**
 * The admin token: `--admin-token`, else the file of `--admin-token-file`, else
 * `TITAN_ADMIN_TOKEN`; {@link ClientConfigError} (exit 2) when none is given or the file is unreadable.
 */
export function resolveAdminToken(options: KeysOptions, env: CliIo['env']): string {
  if (options.adminToken) return options.adminToken;
  if (options.adminTokenFile) {
    try {
      const token = readFileSync(options.adminTokenFile, 'utf8').trim();
      if (token) return token;
    } catch (cause) {
      throw new ClientConfigError(`cannot read the admin token file ${options.adminTokenFile}: ${(cause as Error).message}`, { cause });
    }
    throw new ClientConfigError(`the admin token file ${options.adminTokenFile} is empty`);
  }
  if (env.TITAN_ADMIN_TOKEN) return env.TITAN_ADMIN_TOKEN;
  throw new ClientConfigError(
    "titan keys needs the coordinator's admin token: --admin-token TOKEN (env TITAN_ADMIN_TOKEN) or --admin-token-file <coordinator data dir>/admin-token",
  );
}

function connect(command: Command, io: CliIo): { client: TitanAdminClient; globals: GlobalOptions } {
  const globals = command.optsWithGlobals<GlobalOptions & KeysOptions>();
  const tls = tlsFromOptions(globals);
  const client = new TitanAdminClient({
    coordinator: globals.coordinator,
    adminToken: resolveAdminToken(globals, io.env),
    ...(tls ? { tls } : {}),
    ...(globals.timeout ? { requestTimeoutMs: globals.timeout } : {}),
  });
  return { client, globals };
}

/** `2026-05-01 12:00Z`, or `never`. */
function formatTime(ms: number | undefined, none = 'never'): string {
  return ms === undefined ? none : `${new Date(ms).toISOString().slice(0, 16).replace('T', ' ')}Z`;
}

/** `rpm 60, tpm 20000, concurrent 2, budget 1000000, models a,b`, or `-` when the key has no limit. */
export function formatLimits(key: ApiKeyInfo): string {
  const parts = [
    key.requestsPerMinute ? `rpm ${key.requestsPerMinute}` : '',
    key.tokensPerMinute ? `tpm ${key.tokensPerMinute}` : '',
    key.maxConcurrent ? `concurrent ${key.maxConcurrent}` : '',
    key.budgetTokens ? `budget ${key.budgetTokens}` : '',
    key.models.length ? `models ${key.models.join(',')}` : '',
  ].filter(Boolean);
  return parts.length ? parts.join(', ') : '-';
}

/** `1234/1000000 tokens, 56 requests, last 2026-05-01 12:00Z`. */
export function formatUsage(key: ApiKeyInfo): string {
  const tokens = `${key.tokensUsed}${key.budgetTokens ? `/${key.budgetTokens}` : ''} tokens`;
  return `${tokens}, ${key.requestsTotal} requests${key.lastUsedAtMs !== undefined ? `, last ${formatTime(key.lastUsedAtMs)}` : ''}`;
}

/**
 * `titan keys create|ls|revoke`: the coordinator's API keys over its AdminService, with the
 * admin token (`--admin-token`, `--admin-token-file`, env `TITAN_ADMIN_TOKEN`).
 */
export function registerKeys(program: Command, io: CliIo): void {
  const keys = program
    .command('keys')
    .description("manage the coordinator's API keys (needs its admin token)")
    .option('--admin-token <token>', "the coordinator's admin token (env TITAN_ADMIN_TOKEN)")
    .option('--admin-token-file <file>', 'read the admin token from this file (the coordinator writes <data-dir>/admin-token)')
    .addHelpText(
      'after',
      '\nExamples:\n  titan keys create --name ci --rpm 60 --tpm 20000 --models llama-2-tiny-random --expires 30d\n  titan keys ls --json\n  titan keys revoke ci\n',
    );

  keys
    .command('create')
    .description('create an API key; its secret (tk-…) is printed once, on stdout')
    .requiredOption('--name <name>', "the key's name (unique among active keys; the client id of its requests)")
    .option('--rpm <n>', 'requests per sliding minute (default unlimited)', parseIntArg('--rpm'))
    .option('--tpm <n>', 'tokens (prompt + generated) per sliding minute (default unlimited)', parseIntArg('--tpm'))
    .option('--max-concurrent <n>', 'jobs at once (default unlimited)', parseIntArg('--max-concurrent'))
    .option('--budget-tokens <n>', 'tokens over the lifetime of the key (default unlimited)', parseIntArg('--budget-tokens'))
    .option('--models <a,b>', 'models the key may use (default every model)', parseListArg('--models'))
    .option('--expires <duration>', 'lifetime: 30d, 12h, 90m, 2w … (default never)', parseLifetimeArg('--expires'))
    .action(async (options: CreateOptions, command: Command) => {
      const { client, globals } = connect(command, io);
      try {
        const { key, secret } = await client.createApiKey(
          {
            name: options.name,
            ...(options.rpm !== undefined ? { requestsPerMinute: options.rpm } : {}),
            ...(options.tpm !== undefined ? { tokensPerMinute: options.tpm } : {}),
            ...(options.maxConcurrent !== undefined ? { maxConcurrent: options.maxConcurrent } : {}),
            ...(options.budgetTokens !== undefined ? { budgetTokens: options.budgetTokens } : {}),
            ...(options.models ? { models: options.models } : {}),
            ...(options.expires !== undefined ? { expiresInSeconds: options.expires } : {}),
          },
          io.signal ? { signal: io.signal } : {},
        );
        if (globals.json) {
          io.stdout.write(jsonLine({ key, secret, warning: SECRET_WARNING }));
          return;
        }
        io.stdout.write(`${secret}\n`);
        io.stderr.write(
          `created API key "${key.name}" (${key.id}, ${key.prefix}…): ${formatLimits(key)}; expires ${formatTime(key.expiresAtMs)}\n` +
            `warning: ${SECRET_WARNING}\n`,
        );
      } finally {
        client.close();
      }
    });

  keys
    .command('ls')
    .description('list API keys with their limits and usage')
    .option('-a, --all', 'also revoked and expired keys')
    .action(async (options: { all?: boolean }, command: Command) => {
      const { client, globals } = connect(command, io);
      try {
        const list = await client.listApiKeys({ includeInactive: options.all ?? false, ...(io.signal ? { signal: io.signal } : {}) });
        if (globals.json) {
          io.stdout.write(jsonLine(list));
          return;
        }
        if (list.length === 0) {
          io.stderr.write(options.all ? 'no API keys\n' : 'no active API keys (--all lists revoked and expired ones)\n');
          return;
        }
        const rows = [['NAME', 'ID', 'PREFIX', 'LIMITS', 'USAGE', 'EXPIRES', 'STATE']];
        for (const k of list) rows.push([k.name, k.id, `${k.prefix}…`, formatLimits(k), formatUsage(k), formatTime(k.expiresAtMs), k.state]);
        io.stdout.write(renderTable(rows));
      } finally {
        client.close();
      }
    });

  keys
    .command('revoke')
    .description('revoke an API key (by id or name): its requests are refused at once')
    .argument('<key>', 'key id (key-…) or name')
    .action(async (idOrName: string, _options: unknown, command: Command) => {
      const { client, globals } = connect(command, io);
      try {
        const key = await client.revokeApiKey(idOrName, io.signal ? { signal: io.signal } : {});
        if (globals.json) io.stdout.write(jsonLine(key));
        else io.stdout.write(`revoked API key "${key.name}" (${key.id}, ${key.prefix}…)\n`);
      } finally {
        client.close();
      }
    });
}

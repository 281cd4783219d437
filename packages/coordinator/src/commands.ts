import { ConfigError } from '@titancompute/server-kit';
import { coordinatorStoreFromConfig, type CoordinatorConfig } from './config.js';
import { AGENT_ID_PATTERN } from './identity/agent-messages.js';
import { forgetCoordinatorAgent, rotateCoordinatorKey } from './store/coordinator-store.js';

/** What a subcommand prints (one JSON line on stdout) and its exit code. */
export interface CommandResult {
  output: Record<string, unknown>;
  exitCode: number;
}

/** The subcommands of `titan-coordinator`, as `--help` names them. */
export const COMMAND_HELP =
  'Subcommands: `titan-coordinator rotate-key --data-dir D` writes a new signing key (old public keys stay published until their tokens expire); ' +
  "`titan-coordinator forget-agent ID --data-dir D` releases an agent id bound to an agent's credential (replacing an agent machine; exit 1 when the id was not bound). " +
  'With --store postgres (and --postgres-url, --keyring-secret) both act on the shared database, and every running replica follows at once.';

/**
 * `rotate-key`: writes a new current signing key into `<data-dir>/keys/keyring.json` (or, with
 * `--store postgres`, into the shared database, sealed with the keyring secret); the old public
 * key stays published for one token TTL. Throws {@link ConfigError} for extra arguments.
 */
export async function rotateKeyCommand(config: CoordinatorConfig, args: readonly string[]): Promise<CommandResult> {
  if (args.length > 0)
    throw new ConfigError(`unexpected arguments after rotate-key: ${args.join(' ')}`, {
      option: 'arguments',
      source: 'command line',
      expected: 'rotate-key [options]',
    });
  const store = coordinatorStoreFromConfig(config);
  const { kid, previousKid, location } = await rotateCoordinatorKey({
    kind: store.store,
    dataDir: config.dataDir,
    postgresUrl: store.postgresUrl,
    keyringSecret: store.keyringSecret,
    tokenTtlMs: config.tokenTtlMs,
  });
  return {
    output: {
      msg: 'rotated signing key',
      kid,
      previousKid: previousKid ?? null,
      ...(store.store === 'postgres' ? { store: location } : { dataDir: config.dataDir }),
    },
    exitCode: 0,
  };
}

/**
 * `forget-agent ID`: releases an agent id's credential binding in `<data-dir>/coordinator.db`
 * (or, with `--store postgres`, in the shared database; exit code 1 when it was not bound).
 * Throws {@link ConfigError} unless given exactly one valid id (or `--store postgres` lacks `--postgres-url`).
 */
export async function forgetAgentCommand(config: CoordinatorConfig, args: readonly string[]): Promise<CommandResult> {
  const [agentId, ...extra] = args;
  if (agentId === undefined || extra.length > 0 || !AGENT_ID_PATTERN.test(agentId)) {
    throw new ConfigError(`forget-agent needs exactly one agent id (1-128 characters of A-Z a-z 0-9 . _ : -), got: ${args.join(' ') || 'nothing'}`, {
      option: 'arguments',
      source: 'command line',
      expected: 'forget-agent ID [options]',
      got: args.join(' '),
    });
  }
  // Releasing an id needs no keyring secret: only the URL is required.
  if (config.store === 'postgres' && !config.postgresUrl?.trim()) coordinatorStoreFromConfig(config);
  const { forgotten, location } = await forgetCoordinatorAgent(
    { kind: config.store, dataDir: config.dataDir, postgresUrl: config.postgresUrl, tokenTtlMs: config.tokenTtlMs },
    agentId,
  );
  return {
    output: {
      msg: forgotten ? 'agent id released: the next agent registering with it binds its own credential' : 'agent id was not bound',
      agentId,
      forgotten,
      file: location,
    },
    exitCode: forgotten ? 0 : 1,
  };
}

/**
 * Runs the subcommand named by the first positional argument, or returns `undefined` when there
 * is none (start the coordinator). Throws {@link ConfigError} for an unknown command.
 */
export async function runCommand(config: CoordinatorConfig, positionals: readonly string[]): Promise<CommandResult | undefined> {
  const [command, ...rest] = positionals;
  if (command === undefined) return undefined;
  if (command === 'rotate-key') return rotateKeyCommand(config, rest);
  if (command === 'forget-agent') return forgetAgentCommand(config, rest);
  throw new ConfigError(`unknown command "${command}"`, {
    option: 'command',
    source: 'command line',
    expected: 'no command, rotate-key or forget-agent',
    got: command,
  });
}

import { Command, CommanderError, Option } from 'commander';
import { TitanAbortError, TitanError } from '../errors.js';
import { DEFAULT_INSTANCE_MANAGER } from '../instance-manager-client.js';
import { DEFAULT_COORDINATOR } from '../titan-client.js';
import { registerChat } from './commands/chat.js';
import { registerGenerate } from './commands/generate.js';
import { registerInstances } from './commands/instances.js';
import { registerKeys } from './commands/keys.js';
import { registerStatus } from './commands/status.js';
import type { CliIo } from './context.js';
import { hintFor } from './error-hints.js';
import { EXIT, EXIT_CODES_HELP, exitCodeFor } from './exit-codes.js';
import { errorToJson, jsonLine } from './format.js';
import { parseIntArg } from './parsers.js';

const VERSION = '0.1.0';

/** Builds the `titan` command tree (commander), writing to `io`. */
export function createProgram(io: CliIo): Command {
  const env = io.env;
  const program = new Command('titan')
    .description('TitanCompute CLI: generate text on a cluster, inspect agents and instances.')
    .version(VERSION, '-V, --version')
    .addOption(
      new Option('--coordinator <host:port>', 'coordinator gRPC address; several comma-separated (replicas: tried in turn) (env TITAN_COORDINATOR)').default(
        env.TITAN_COORDINATOR || DEFAULT_COORDINATOR,
      ),
    )
    .addOption(
      new Option('--instance-manager <host:port>', 'instance manager gRPC address (env TITAN_INSTANCE_MANAGER)').default(
        env.TITAN_INSTANCE_MANAGER || DEFAULT_INSTANCE_MANAGER,
      ),
    )
    .addOption(new Option('--tls-ca <file>', 'CA bundle (PEM): use TLS (env TITAN_TLS_CA)').default(env.TITAN_TLS_CA))
    .addOption(new Option('--tls-cert <file>', 'client certificate (PEM) for mTLS (env TITAN_TLS_CERT)').default(env.TITAN_TLS_CERT))
    .addOption(new Option('--tls-key <file>', 'client key (PEM) for mTLS (env TITAN_TLS_KEY)').default(env.TITAN_TLS_KEY))
    .addOption(new Option('--tls-server-name <name>', 'name to check on server certificates (env TITAN_TLS_SERVER_NAME)').default(env.TITAN_TLS_SERVER_NAME))
    .option('--json', 'machine-readable JSON output on stdout (errors too)')
    .option('--timeout <ms>', 'deadline of each call in milliseconds (whole stream for generate)', parseIntArg('--timeout'))
    .showHelpAfterError('(run with --help for usage)')
    // Set before the commands are added so every command inherits it: `titan generate --help`
    // also lists --coordinator, --json, --timeout …
    .configureHelp({ showGlobalOptions: true })
    .addHelpText(
      'after',
      `\nExamples:\n  titan generate --model llama-2-tiny-random "Once upon a time"\n  titan chat --model llama-2-tiny-random --system "Be brief." "Hello"\n  titan status --json\n  titan instances watch --type INFERENCE_AGENT\n  titan keys create --name ci --rpm 60 --admin-token-file DATA_DIR/admin-token\n\n${EXIT_CODES_HELP}\n`,
    )
    .exitOverride()
    .configureOutput({ writeOut: (s) => void io.stdout.write(s), writeErr: (s) => void io.stderr.write(s) });
  registerGenerate(program, io);
  registerChat(program, io);
  registerStatus(program, io);
  registerInstances(program, io);
  registerKeys(program, io);
  for (const command of program.commands) {
    command.exitOverride().configureOutput({ writeOut: (s) => void io.stdout.write(s), writeErr: (s) => void io.stderr.write(s) });
    for (const sub of command.commands)
      sub.exitOverride().configureOutput({ writeOut: (s) => void io.stdout.write(s), writeErr: (s) => void io.stderr.write(s) });
  }
  return program;
}

/**
 * Runs the `titan` CLI with `argv` (without `node` and the script) and returns the exit code
 * (see {@link EXIT}). Never calls `process.exit`, so tests can run it in-process.
 *
 * @example
 * ```ts
 * const code = await runCli(['status', '--json'], { stdout: process.stdout, stderr: process.stderr, env: process.env });
 * ```
 */
export async function runCli(argv: string[], io: CliIo): Promise<number> {
  const program = createProgram(io);
  if (argv.length === 0) {
    program.outputHelp();
    return EXIT.USAGE;
  }
  try {
    await program.parseAsync(argv, { from: 'user' });
    return EXIT.OK;
  } catch (error) {
    if (error instanceof CommanderError) {
      if (error.code === 'commander.helpDisplayed' || error.code === 'commander.version' || error.code === 'commander.help') return EXIT.OK;
      return EXIT.USAGE;
    }
    const json = program.opts<{ json?: boolean }>().json === true;
    const reported = error instanceof TitanError && error.context.reported === true;
    const cancelled = error instanceof TitanAbortError && io.signal?.aborted === true;
    if (!reported) {
      const hint = hintFor(error);
      if (json) io.stdout.write(jsonLine({ error: { ...errorToJson(error), ...(hint ? { hint } : {}) } }));
      else if (cancelled) io.stderr.write('titan: cancelled\n');
      else io.stderr.write(`titan: ${error instanceof Error ? error.message : String(error)}\n${hint ? `hint: ${hint}\n` : ''}`);
    }
    return exitCodeFor(error);
  }
}

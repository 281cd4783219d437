import type { Command } from 'commander';
import { type Generation, TitanClient } from '../../titan-client.js';
import type { GenerationStats } from '../../types.js';
import { tlsFromOptions, type CliIo, type GlobalOptions } from '../context.js';
import { formatNumber, jsonLine, shortestFloat32 } from '../format.js';
import { parseIntArg, parseNumberArg, parseParam } from '../parsers.js';
import { startWaitSpinner } from '../spinner.js';

/** Options `generate` and `chat` share. */
export interface GenerateOptions {
  model: string;
  maxTokens?: number;
  temperature?: number;
  param?: Record<string, string>;
  attempts?: number;
  /** `--api-key`; default the `TITAN_API_KEY` environment variable. */
  apiKey?: string;
}

function summary(stats: GenerationStats): string {
  return (
    `${stats.tokens} tokens · TTFT ${formatNumber(stats.timeToFirstTokenMs)} ms (client ${formatNumber(stats.clientTimeToFirstTokenMs)} ms)` +
    ` · ${formatNumber(stats.tokensPerSecond)} tok/s · agent ${stats.agentId} · ${stats.finishReason}` +
    (stats.attempts > 1 ? ` · ${stats.attempts} attempts` : '') +
    '\n'
  );
}

/**
 * Runs one generation for `generate` or `chat`: a spinner until the first token, the text
 * streamed to stdout and a summary to stderr, or one JSON object with `--json`.
 */
export async function streamGeneration(
  io: CliIo,
  command: Command,
  options: GenerateOptions,
  start: (client: TitanClient, signal: AbortSignal | undefined) => Generation,
): Promise<void> {
  const globals = command.optsWithGlobals<GlobalOptions & GenerateOptions>();
  const tls = tlsFromOptions(globals);
  const client = new TitanClient({
    coordinator: globals.coordinator,
    ...(tls ? { tls } : {}),
    ...(globals.timeout ? { requestTimeoutMs: globals.timeout, streamTimeoutMs: globals.timeout } : {}),
    ...(options.attempts ? { maxAttempts: options.attempts } : {}),
    // From the CLI's own environment (not process.env), so what `io.env` says is what is sent.
    apiKey: options.apiKey ?? io.env.TITAN_API_KEY ?? '',
  });
  let spinner: Awaited<ReturnType<typeof startWaitSpinner>> | undefined;
  let text = '';
  try {
    const generation = start(client, io.signal);
    spinner = globals.json ? undefined : await startWaitSpinner(io, `waiting for ${options.model}…`);
    for await (const chunk of generation) {
      spinner?.stop(); // once: only the first call clears the line (see startWaitSpinner)
      if (chunk.done) {
        if (globals.json) io.stdout.write(jsonLine({ text, stats: { ...chunk.stats, temperature: shortestFloat32(chunk.stats.temperature) } }));
        else {
          if (!text.endsWith('\n')) io.stdout.write('\n');
          io.stderr.write(summary(chunk.stats));
        }
      } else {
        text += chunk.text;
        if (!globals.json) io.stdout.write(chunk.text);
      }
    }
  } catch (error) {
    spinner?.stop();
    if (text !== '' && !globals.json) io.stdout.write('\n');
    throw error;
  } finally {
    client.close();
  }
}

/** Adds the options `generate` and `chat` share (`--max-tokens`, `--temperature`, `--param`, `--attempts`, `--api-key`) to `command`. */
export function addGenerationOptions(command: Command): Command {
  return command
    .option('--max-tokens <n>', 'most tokens to generate (default: the coordinator default, 100)', parseIntArg('--max-tokens'))
    .option('--temperature <t>', 'sampling temperature 0..2 (0 = greedy; default 0.7)', parseNumberArg('--temperature'))
    .option('-p, --param <key=value>', 'engine parameter (top_p, top_k, seed, stop, repeat_penalty …); repeatable', parseParam)
    .option('--attempts <n>', 'agents to try before the first token (default 3)', parseIntArg('--attempts'))
    .option('--api-key <key>', 'API key (tk-…) for a coordinator that requires one (env TITAN_API_KEY)');
}

/** `titan generate --model M "prompt"`: streams text to stdout, summary to stderr. */
export function registerGenerate(program: Command, io: CliIo): void {
  addGenerationOptions(
    program
      .command('generate')
      .description('generate text: tokens stream to stdout, a summary (tokens, TTFT, tokens/s, agent) goes to stderr')
      .argument('<prompt...>', 'the prompt (several words are joined with spaces)')
      .requiredOption('-m, --model <name>', 'model name, e.g. llama-2-tiny-random'),
  ).action(async (words: string[], options: GenerateOptions, command: Command) => {
    await streamGeneration(io, command, options, (client, signal) =>
      client.generate({
        model: options.model,
        prompt: words.join(' '),
        ...(options.maxTokens !== undefined ? { maxTokens: options.maxTokens } : {}),
        ...(options.temperature !== undefined ? { temperature: options.temperature } : {}),
        parameters: options.param ?? {},
        ...(signal ? { signal } : {}),
      }),
    );
  });
}

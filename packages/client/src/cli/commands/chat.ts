import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import { InvalidArgumentError } from '../../errors.js';
import type { ChatMessage } from '../../types.js';
import type { CliIo } from '../context.js';
import { addGenerationOptions, streamGeneration, type GenerateOptions } from './generate.js';

interface ChatOptions extends GenerateOptions {
  system?: string;
  messages?: string;
}

/**
 * Reads `--messages FILE.json`: a JSON array of `{ role, content }` (roles are checked by the
 * client's validation). Throws {@link InvalidArgumentError} on `messages` when the file cannot be
 * read or is not a JSON array.
 */
export function readMessagesFile(file: string): ChatMessage[] {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (cause) {
    throw new InvalidArgumentError(`messages: cannot read ${file}: ${(cause as Error).message}`, 'messages', { cause });
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (cause) {
    throw new InvalidArgumentError(`messages: ${file} is not JSON: ${(cause as Error).message}`, 'messages', { cause });
  }
  if (!Array.isArray(parsed)) throw new InvalidArgumentError(`messages: ${file} must hold a JSON array of { "role", "content" } objects`, 'messages');
  return parsed as ChatMessage[];
}

/**
 * `titan chat --model M [--system TEXT] [--messages FILE.json] [MESSAGE...]`: the conversation is
 * the file's messages (if any), preceded by the `--system` message and followed by MESSAGE as a
 * user turn (several words are joined with spaces). Output like `generate`.
 */
export function registerChat(program: Command, io: CliIo): void {
  addGenerationOptions(
    program
      .command('chat')
      .description("chat: the model's own chat template is applied to the messages; the reply streams to stdout, a summary goes to stderr")
      .argument('[message...]', 'the user message (several words are joined with spaces); optional with --messages')
      .requiredOption('-m, --model <name>', 'model name, e.g. llama-2-tiny-random')
      .option('-s, --system <text>', 'a system message, put first')
      .option('--messages <file>', 'a JSON file holding an array of {"role": "system"|"user"|"assistant", "content": "..."}'),
  ).action(async (words: string[], options: ChatOptions, command: Command) => {
    const messages: ChatMessage[] = [
      ...(options.system !== undefined ? [{ role: 'system' as const, content: options.system }] : []),
      ...(options.messages !== undefined ? readMessagesFile(options.messages) : []),
      ...(words.length > 0 ? [{ role: 'user' as const, content: words.join(' ') }] : []),
    ];
    if (options.messages === undefined && words.length === 0) {
      throw new InvalidArgumentError('messages: give a MESSAGE or --messages FILE.json', 'messages');
    }
    await streamGeneration(io, command, options, (client, signal) =>
      client.chat({
        model: options.model,
        messages,
        ...(options.maxTokens !== undefined ? { maxTokens: options.maxTokens } : {}),
        ...(options.temperature !== undefined ? { temperature: options.temperature } : {}),
        parameters: options.param ?? {},
        ...(signal ? { signal } : {}),
      }),
    );
  });
}

import { describe, expect, it } from '@jest/globals';
import { OpenAiRequestError } from '../errors.js';
import { embeddingsGrantInput, parseChatCompletionRequest, parseCompletionRequest, parseEmbeddingsRequest } from './openai-request.js';
import { chatCompletionChunk, embeddingsResponse, openAiError, sseEvent, usageChunk } from './openai-response.js';

const chat = (extra: Record<string, unknown> = {}) => ({ model: 'tiny', messages: [{ role: 'user', content: 'Hi' }], ...extra });

/** The error a parser throws for `body`. */
function refusal(parse: (b: unknown) => unknown, body: unknown): OpenAiRequestError {
  try {
    parse(body);
  } catch (err) {
    if (err instanceof OpenAiRequestError) return err;
    throw err;
  }
  throw new Error('expected the request to be refused');
}

describe('parseChatCompletionRequest', () => {
  it('reads messages, limits and sampling options as an inference request binds them', () => {
    const req = parseChatCompletionRequest(
      chat({
        messages: [
          {
            role: 'developer',
            content: [
              { type: 'text', text: 'Be ' },
              { type: 'text', text: 'brief.' },
            ],
          },
          { role: 'user', content: 'Hi' },
          { role: 'assistant', content: null },
        ],
        max_completion_tokens: 12,
        temperature: 0,
        top_p: 0.9,
        seed: 7,
        stop: ['\n\n', 'END'],
        stream: true,
        stream_options: { include_usage: true },
        user: 'u-1',
      }),
    );
    expect(req).toEqual({
      kind: 'chat',
      model: 'tiny',
      prompt: '',
      messages: [
        { role: 'system', content: 'Be brief.' },
        { role: 'user', content: 'Hi' },
        { role: 'assistant', content: '' },
      ],
      maxTokens: 12,
      temperature: 0,
      parameters: { top_p: '0.9', seed: '7', stop: '["\\n\\n","END"]' },
      stream: true,
      includeUsage: true,
      user: 'u-1',
    });
  });

  it("defaults to OpenAI's temperature 1, no max tokens, no stream", () => {
    expect(parseChatCompletionRequest(chat())).toMatchObject({ temperature: 1, maxTokens: undefined, stream: false, includeUsage: false, parameters: {} });
    expect(parseChatCompletionRequest(chat({ stop: 'x', n: 1, tool_choice: 'none', response_format: { type: 'text' } })).parameters).toEqual({
      stop: '["x"]',
    });
  });

  it.each([
    [{ n: 2 }, 'n', 'unsupported_parameter'],
    [{ tools: [{ type: 'function', function: { name: 'f' } }] }, 'tools', 'unsupported_parameter'],
    [{ tool_choice: 'auto' }, 'tool_choice', 'unsupported_parameter'],
    [{ logprobs: true }, 'logprobs', 'unsupported_parameter'],
    [{ response_format: { type: 'json_object' } }, 'response_format', 'unsupported_parameter'],
    [{ temperature: 2.5 }, 'temperature', 'invalid_value'],
    [{ top_p: 'high' }, 'top_p', 'invalid_value'],
    [{ max_tokens: 0 }, 'max_tokens', 'invalid_value'],
    [{ max_tokens: 5, max_completion_tokens: 6 }, 'max_completion_tokens', 'invalid_value'],
    [{ stream_options: { include_usage: true } }, 'stream_options', 'invalid_value'],
    [{ stop: [''] }, 'stop', 'invalid_value'],
    [{ messages: [] }, 'messages', 'invalid_value'],
    [{ messages: [{ role: 'tool', content: 'x', tool_call_id: '1' }] }, 'messages[0].role', 'unsupported_value'],
    [{ messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: 'x' } }] }] }, 'messages[0].content[0]', 'unsupported_content'],
    [{ model: undefined }, 'model', 'missing_required_parameter'],
  ])('refuses %j naming %s (never silently ignored)', (extra, param, code) => {
    const err = refusal(parseChatCompletionRequest, chat(extra));
    expect(err.param).toBe(param);
    expect(err.code).toBe(code);
    expect(err.message).toContain(param.split('[')[0]);
  });

  it('refuses a body that is not a JSON object', () => {
    expect(refusal(parseChatCompletionRequest, [1, 2])).toMatchObject({ param: null, code: 'invalid_json' });
  });
});

describe('parseCompletionRequest', () => {
  it('takes a string or a one-string array, and max_tokens', () => {
    expect(parseCompletionRequest({ model: 'tiny', prompt: ['Once'], max_tokens: 3 })).toMatchObject({
      kind: 'completion',
      prompt: 'Once',
      messages: [],
      maxTokens: 3,
    });
  });

  it.each([
    [{ prompt: ['a', 'b'] }, 'prompt', 'unsupported_parameter'],
    [{ prompt: [1, 2, 3] }, 'prompt', 'invalid_value'],
    [{ prompt: '' }, 'prompt', 'invalid_value'],
    [{}, 'prompt', 'missing_required_parameter'],
    [{ prompt: 'x', echo: true }, 'echo', 'unsupported_parameter'],
    [{ prompt: 'x', best_of: 3 }, 'best_of', 'unsupported_parameter'],
    [{ prompt: 'x', suffix: 'y' }, 'suffix', 'unsupported_parameter'],
  ])('refuses %j naming %s', (extra, param, code) => {
    expect(refusal(parseCompletionRequest, { model: 'tiny', ...extra })).toMatchObject({ param, code });
  });
});

describe('parseEmbeddingsRequest', () => {
  it('reads one or many inputs and the encoding', () => {
    expect(parseEmbeddingsRequest({ model: 'tiny', input: 'a' })).toEqual({ model: 'tiny', input: ['a'], encodingFormat: 'float', user: undefined });
    expect(parseEmbeddingsRequest({ model: 'tiny', input: ['a', 'b'], encoding_format: 'base64' }).encodingFormat).toBe('base64');
  });

  it.each([
    [{ input: [] }, 'input'],
    [{ input: [[1, 2]] }, 'input'],
    [{ input: ['a', ''] }, 'input[1]'],
    [{ input: 'a', dimensions: 8 }, 'dimensions'],
    [{ input: 'a', encoding_format: 'int8' }, 'encoding_format'],
  ])('refuses %j naming %s', (extra, param) => {
    expect(refusal(parseEmbeddingsRequest, { model: 'tiny', ...extra }).param).toBe(param);
  });

  it('binds embeddings grants to their exact inputs and task', () => {
    expect(embeddingsGrantInput(['a', 'b'])).toEqual({ prompt: '["a","b"]', parameters: { task: 'embeddings' } });
  });
});

describe('OpenAI response shapes', () => {
  const id = { id: 'chatcmpl-1', created: 1, model: 'tiny' };

  it('frames Server-Sent Events as OpenAI does', () => {
    expect(sseEvent({ a: 1 })).toBe('data: {"a":1}\n\n');
  });

  it('carries usage: null on chunks of an include_usage stream and usage on its last chunk', () => {
    expect(chatCompletionChunk(id, { content: 'x' }, null, true)).toMatchObject({
      object: 'chat.completion.chunk',
      usage: null,
      choices: [{ delta: { content: 'x' } }],
    });
    expect(chatCompletionChunk(id, { content: 'x' }, null, false)).not.toHaveProperty('usage');
    expect(usageChunk('chat', id, { prompt_tokens: 2, completion_tokens: 3, total_tokens: 5 })).toMatchObject({ choices: [], usage: { total_tokens: 5 } });
  });

  it('encodes base64 embeddings as little-endian float32', () => {
    const body = embeddingsResponse('tiny', [[1, -0.5]], 'base64', 2) as { data: { embedding: string }[] };
    const bytes = Buffer.from(body.data[0]!.embedding, 'base64');
    expect([bytes.readFloatLE(0), bytes.readFloatLE(4)]).toEqual([1, -0.5]);
  });

  it("types errors by status in OpenAI's shape", () => {
    expect(openAiError(429, 'slow down', { code: 'rate_limit_exceeded' })).toEqual({
      error: { message: 'slow down', type: 'rate_limit_exceeded', param: null, code: 'rate_limit_exceeded' },
    });
    expect(openAiError(404, 'no such model', { param: 'model' }).error.type).toBe('invalid_request_error');
  });
});

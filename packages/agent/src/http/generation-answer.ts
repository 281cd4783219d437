import type { ServerResponse } from 'node:http';
import type { Context } from '@opentelemetry/api';
import type { FastifyReply } from 'fastify';
import {
  chatCompletion,
  chatCompletionChunk,
  completion,
  completionChunk,
  OPENAI_SSE_DONE,
  OPENAI_SSE_HEADERS,
  openAiResponseId,
  openAiUsage,
  sseEvent,
  usageChunk,
  type OpenAiFinishReason,
  type OpenAiGenerationRequest,
  type OpenAiResponseIdentity,
} from '@titancompute/protocol';
import type { Logger } from '@titancompute/server-kit';
import type { FinishReason, GenerationStats } from '../engines/run-generation.js';
import type { Batch } from '../service/coalesce.js';
import type { GenerationJobRequest, JobRunner } from '../service/job-runner.js';
import { openAiErrorAnswer } from './openai-errors.js';

/** What {@link answerGeneration} needs besides the request. */
export interface GenerationAnswerContext {
  runner: JobRunner;
  /** The session token the request carried (query or bearer). */
  sessionToken: string;
  /** Aborted when the client closes the connection: the job is cancelled. */
  signal: AbortSignal;
  logger: Logger;
  /** The request's server span context: parents the job's spans. */
  traceContext?: Context | undefined;
}

/**
 * Why a generation ended, as OpenAI names it: `stop` or `length`; a job cut by the agent's
 * drain deadline (`cancelled` while the client is still there) ended for `length`.
 */
export function openAiFinishReason(reason: FinishReason): OpenAiFinishReason {
  return reason === 'stop' ? 'stop' : 'length';
}

/** The job request of an OpenAI body: unset max tokens means the granted ones (StreamRequest's 0). */
export function generationJobRequest(request: OpenAiGenerationRequest, sessionToken: string): GenerationJobRequest {
  return {
    sessionToken,
    model: request.model,
    prompt: request.prompt,
    messages: request.messages,
    maxTokens: request.maxTokens ?? 0,
    temperature: request.temperature,
    options: request.parameters,
  };
}

/** Writes `data`; when the socket's buffer is full, waits until it drains (or closes) so a slow reader holds back the writer. */
async function write(res: ServerResponse, data: string): Promise<void> {
  if (res.destroyed || res.write(data)) return;
  await new Promise<void>((resolve) => {
    const done = () => {
      res.off('drain', done);
      res.off('close', done);
      resolve();
    };
    res.on('drain', done);
    res.on('close', done);
  });
}

/**
 * Stops answering a client that went away: nothing more can reach it, and its socket (which may
 * only be half-closed) is destroyed, not left open until the keep-alive timeout.
 */
export function abandon(reply: FastifyReply): FastifyReply {
  if (!reply.sent) reply.hijack();
  reply.raw.destroy();
  return reply;
}

/** The whole answer of a non-streaming request: every piece, then the object with its usage. */
async function sendWhole(
  reply: FastifyReply,
  request: OpenAiGenerationRequest,
  identity: OpenAiResponseIdentity,
  batches: AsyncGenerator<Batch, GenerationStats>,
  signal: AbortSignal,
): Promise<FastifyReply> {
  let text = '';
  let r = await batches.next();
  for (; !r.done; r = await batches.next()) text += r.value.text;
  if (signal.aborted) return abandon(reply);
  const stats = r.value;
  const usage = openAiUsage(stats.promptTokens, stats.tokensGenerated);
  const finish = openAiFinishReason(stats.finishReason);
  return reply.send(request.kind === 'chat' ? chatCompletion(identity, text, finish, usage) : completion(identity, text, finish, usage));
}

/**
 * The Server-Sent Events answer of a streaming request, as OpenAI sends it (headers and, for a
 * chat, the role chunk as soon as the job has its slot): one chunk per batch of text, the last
 * choice chunk an empty delta (or text) and the finish reason, with `include_usage` a usage
 * chunk without choices, then `[DONE]`. A failure is a last `error` event, without `[DONE]`.
 */
async function sendStream(
  reply: FastifyReply,
  request: OpenAiGenerationRequest,
  identity: OpenAiResponseIdentity,
  batches: AsyncGenerator<Batch, GenerationStats>,
  context: GenerationAnswerContext,
): Promise<FastifyReply> {
  const res = reply.raw;
  const { includeUsage, kind } = request;
  const chunk = (text: string, finish: OpenAiFinishReason | null) =>
    kind === 'chat'
      ? chatCompletionChunk(identity, finish ? {} : { content: text }, finish, includeUsage)
      : completionChunk(identity, text, finish, includeUsage);
  reply.hijack();
  res.writeHead(200, OPENAI_SSE_HEADERS);
  if (kind === 'chat') await write(res, sseEvent(chatCompletionChunk(identity, { role: 'assistant', content: '' }, null, includeUsage)));
  else res.flushHeaders();
  for (;;) {
    let r: IteratorResult<Batch, GenerationStats>;
    try {
      r = await batches.next();
    } catch (err) {
      if (!context.signal.aborted) await write(res, sseEvent(openAiErrorAnswer(err, context.logger).body));
      res.end();
      return reply;
    }
    if (context.signal.aborted) return abandon(reply);
    if (!r.done) {
      await write(res, sseEvent(chunk(r.value.text, null)));
      continue;
    }
    const stats = r.value;
    await write(res, sseEvent(chunk('', openAiFinishReason(stats.finishReason))));
    if (includeUsage) await write(res, sseEvent(usageChunk(kind, identity, openAiUsage(stats.promptTokens, stats.tokensGenerated))));
    await write(res, OPENAI_SSE_DONE);
    res.end();
    return reply;
  }
}

/**
 * Answers a chat or completion request (parsed by the protocol's shared parser) through the job
 * runner: admits it (token verified against the body), waits for its slot, runs it, and answers
 * as OpenAI does — one object with `usage`, or an event stream started once the job has its slot.
 * Refusals before the answer started (admission, a full queue; for a whole answer, any failure)
 * are thrown, and the route answers them with their status. The job is closed however the answer
 * ends; a client that closes the connection cancels it (`context.signal`).
 */
export async function answerGeneration(reply: FastifyReply, request: OpenAiGenerationRequest, context: GenerationAnswerContext): Promise<FastifyReply> {
  const job = await context.runner.admitGeneration(generationJobRequest(request, context.sessionToken), context.signal, context.traceContext);
  try {
    const identity = openAiResponseId(request.kind, job.grant.jobId, job.grant.model);
    await job.acquireSlot();
    const batches = job.run();
    try {
      return request.stream ? await sendStream(reply, request, identity, batches, context) : await sendWhole(reply, request, identity, batches, context.signal);
    } finally {
      // Stopping early (client gone, an error) returns the job's generator, which aborts the engine.
      await batches.return(undefined as never).catch(() => undefined);
    }
  } finally {
    job.close();
  }
}

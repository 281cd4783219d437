import type { instanceManager } from '@titancompute/protocol';
import { ShuttingDownError } from '../errors.js';
import type { HealthCheckResult } from '../registry/registry.js';
import { instanceIdSchema, validate } from '../validation/schemas.js';

/** Health checks of one stream answered at once by default (read ahead of the answers written). */
export const DEFAULT_MAX_PIPELINED = 1024;

/** What {@link answerHealthChecks} needs. */
export interface HealthCheckStreamOptions {
  /** Records one health check (the registry's). */
  healthCheck(id: string): Promise<HealthCheckResult>;
  /** The call's signal: the client went away. */
  signal: AbortSignal;
  /** Aborted when the server shuts down: the stream ends with UNAVAILABLE. */
  shutdownSignal?: AbortSignal | undefined;
  /** Requests read ahead of the answers written (backpressure beyond). Default {@link DEFAULT_MAX_PIPELINED}. */
  maxPipelined?: number | undefined;
}

const ignore = () => undefined;

/**
 * The answers of a TryHealthCheckStream: one per request, in request order. Requests are read
 * and checked as they come (up to `maxPipelined` ahead of the answers), so a check that needs
 * the storage does not hold up reading the next ones, only answering them. An invalid
 * `instance_id` ends the stream with INVALID_ARGUMENT once its turn to be answered comes; a
 * server shutdown ends it with UNAVAILABLE.
 */
export async function* answerHealthChecks(
  requests: AsyncIterable<instanceManager.TryHealthCheckStreamRequest>,
  options: HealthCheckStreamOptions,
): AsyncGenerator<instanceManager.TryHealthCheckStreamResponse> {
  const maxPipelined = options.maxPipelined ?? DEFAULT_MAX_PIPELINED;
  const answers: Array<Promise<instanceManager.TryHealthCheckStreamResponse>> = [];
  let readerDone = false;
  let readerError: unknown;
  let closed = false;
  let wakeWriter: (() => void) | undefined;
  let wakeReader: (() => void) | undefined;
  const writerWake = () => {
    const wake = wakeWriter;
    wakeWriter = undefined;
    wake?.();
  };
  const readerWake = () => {
    const wake = wakeReader;
    wakeReader = undefined;
    wake?.();
  };

  const answer = async (instanceId: string): Promise<instanceManager.TryHealthCheckStreamResponse> => {
    const result = await options.healthCheck(validate(instanceIdSchema, instanceId, 'instance_id'));
    return { instanceId, healthy: result.healthy, message: result.message, status: result.status };
  };

  void (async () => {
    try {
      for await (const request of requests) {
        if (closed) break;
        const pending = answer(request.instanceId);
        pending.catch(ignore); // its error is thrown when its turn comes
        answers.push(pending);
        writerWake();
        while (answers.length >= maxPipelined && !closed) await new Promise<void>((resolve) => (wakeReader = resolve));
      }
    } catch (err) {
      readerError = err;
    } finally {
      readerDone = true;
      writerWake();
    }
  })();

  const shutdown = options.shutdownSignal;
  shutdown?.addEventListener('abort', writerWake);
  options.signal.addEventListener('abort', writerWake);
  try {
    for (;;) {
      if (shutdown?.aborted)
        throw new ShuttingDownError('instance manager is shutting down; open the health-check stream again (another replica may serve it)', {});
      if (options.signal.aborted) return;
      const next = answers.shift();
      if (next) {
        readerWake();
        yield await next;
        continue;
      }
      if (readerDone) {
        // A client that half-closes after its last request gets every answer first.
        if (readerError !== undefined && !options.signal.aborted) throw readerError;
        return;
      }
      await new Promise<void>((resolve) => (wakeWriter = resolve));
    }
  } finally {
    closed = true;
    readerWake();
    shutdown?.removeEventListener('abort', writerWake);
    options.signal.removeEventListener('abort', writerWake);
  }
}

import { ClientError, Status } from 'nice-grpc';
import type { instanceManager } from '@titancompute/protocol';
import { createPushQueue, type PushQueue } from '../util/push-queue.js';

/** The part of the instance manager's TryService client a {@link KeepAliveStream} uses. */
export type HealthStreamClient = Pick<instanceManager.TryServiceClient, 'tryHealthCheckStream'>;

/** Health checks over one long-lived TryHealthCheckStream, reopened on demand after it broke. */
export interface KeepAliveStream {
  /**
   * Sends one health check on the stream (opening it first when none is open) and resolves with
   * its answer. Rejects when the stream fails or the answer takes longer than `timeoutMs` (the
   * stream is then dropped; the next check opens a new one). An instance manager without the
   * method rejects with a `ClientError` UNIMPLEMENTED (see {@link isUnimplemented}).
   */
  check(instanceId: string, timeoutMs: number): Promise<instanceManager.TryHealthCheckStreamResponse>;
  /** Closes the open stream; checks in flight reject. */
  close(): void;
}

/** Whether `err` says the instance manager has no TryHealthCheckStream (an older one). */
export function isUnimplemented(err: unknown): boolean {
  return err instanceof ClientError && err.code === Status.UNIMPLEMENTED;
}

interface Waiter {
  resolve(response: instanceManager.TryHealthCheckStreamResponse): void;
  reject(err: unknown): void;
}

interface OpenStream {
  requests: PushQueue<instanceManager.TryHealthCheckStreamRequest>;
  /** Answers come in request order: the first waiter gets the next answer. */
  waiters: Waiter[];
  abort: AbortController;
}

/**
 * Creates a {@link KeepAliveStream} over `client`: the instance manager answers each request
 * of the stream once, in order, so the answers are matched to the checks first in, first out.
 */
export function createKeepAliveStream(client: HealthStreamClient): KeepAliveStream {
  let open: OpenStream | undefined;

  const fail = (stream: OpenStream, err: unknown) => {
    if (open === stream) open = undefined;
    stream.requests.end();
    stream.abort.abort();
    for (const waiter of stream.waiters.splice(0)) waiter.reject(err);
  };

  const start = (): OpenStream => {
    const stream: OpenStream = { requests: createPushQueue(), waiters: [], abort: new AbortController() };
    void (async () => {
      try {
        for await (const response of client.tryHealthCheckStream(stream.requests, { signal: stream.abort.signal })) {
          stream.waiters.shift()?.resolve(response);
        }
        fail(stream, new Error('the instance manager ended the health-check stream'));
      } catch (err) {
        fail(stream, err);
      }
    })();
    return stream;
  };

  return {
    check(instanceId, timeoutMs) {
      open ??= start();
      const stream = open;
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => fail(stream, new Error(`no answer on the health-check stream within ${timeoutMs} ms`)), timeoutMs);
        stream.waiters.push({
          resolve: (response) => {
            clearTimeout(timer);
            resolve(response);
          },
          reject: (err) => {
            clearTimeout(timer);
            reject(err);
          },
        });
        stream.requests.push({ instanceId });
      });
    },
    close() {
      if (open) fail(open, new Error('the health-check stream was closed'));
    },
  };
}

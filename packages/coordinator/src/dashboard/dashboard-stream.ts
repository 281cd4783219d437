import type { ServerResponse } from 'node:http';

/** A viewer whose unsent output passes this is dropped (it reconnects and starts from a snapshot). */
export const MAX_VIEWER_BACKLOG_BYTES = 8 * 1024 * 1024;
/** The reconnect delay browsers are told (ms). */
export const SSE_RETRY_MS = 2000;

/** One `text/event-stream` message. */
export interface SseMessage {
  event: string;
  data: unknown;
  /** The SSE `id` (the browser sends the last one back as `Last-Event-ID` when it reconnects). */
  id?: string | number;
}

/** Formats one server-sent event. */
export function formatSse(message: SseMessage): string {
  const id = message.id === undefined ? '' : `id: ${String(message.id).replace(/[\r\n]/g, '')}\n`;
  // JSON has no raw newlines, so the data is one line.
  return `${id}event: ${message.event}\ndata: ${JSON.stringify(message.data)}\n\n`;
}

/** An open event stream to one browser. */
export interface Viewer<T> {
  /** What the owner keeps about it (e.g. its credential). */
  readonly context: T;
  send(message: SseMessage): void;
  /** Writes already formatted events ({@link formatSse}). */
  write(text: string): void;
  /** Ends the stream. */
  close(): void;
  readonly closed: boolean;
}

/** The open event streams. */
export interface ViewerSet<T> {
  /** Starts an event stream on a raw response (headers written here); `onClose` runs once when it ends. */
  open(res: ServerResponse, context: T, onClose?: () => void): Viewer<T>;
  /** Sends to every viewer (`filter` picks some). */
  broadcast(message: SseMessage, filter?: (viewer: Viewer<T>) => boolean): void;
  /** Every open viewer. */
  list(): Viewer<T>[];
  readonly size: number;
  /** Ends every stream. */
  closeAll(): void;
}

/**
 * Creates a {@link ViewerSet}: server-sent event streams with a backlog bound, so one slow
 * browser cannot hold memory.
 *
 * @example
 * ```ts
 * const viewers = createViewerSet<{ user: string }>();
 * reply.hijack();
 * const viewer = viewers.open(reply.raw, { user: 'admin' });
 * viewers.broadcast({ event: 'fleet', data: rows });
 * ```
 */
export function createViewerSet<T>(): ViewerSet<T> {
  const viewers = new Set<Viewer<T>>();
  return {
    open(res, context, onClose) {
      res.writeHead(200, {
        'content-type': 'text/event-stream; charset=utf-8',
        'cache-control': 'no-cache, no-store, no-transform',
        connection: 'keep-alive',
        'x-accel-buffering': 'no',
        'x-content-type-options': 'nosniff',
      });
      res.write(`retry: ${SSE_RETRY_MS}\n\n`);
      let closed = false;
      const viewer: Viewer<T> = {
        context,
        get closed() {
          return closed;
        },
        send(message) {
          viewer.write(formatSse(message));
        },
        write(text) {
          if (closed || res.writableEnded) return;
          if (res.writableLength > MAX_VIEWER_BACKLOG_BYTES) {
            res.destroy();
            return;
          }
          res.write(text);
        },
        close() {
          if (!closed && !res.writableEnded) res.end();
        },
      };
      viewers.add(viewer);
      res.once('close', () => {
        closed = true;
        viewers.delete(viewer);
        onClose?.();
      });
      return viewer;
    },
    broadcast(message, filter) {
      if (viewers.size === 0) return;
      const text = formatSse(message);
      for (const viewer of viewers) {
        if (viewer.closed || (filter && !filter(viewer))) continue;
        viewer.write(text);
      }
    },
    list: () => [...viewers],
    get size() {
      return viewers.size;
    },
    closeAll() {
      for (const viewer of viewers) viewer.close();
    },
  };
}

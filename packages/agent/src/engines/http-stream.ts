import { EngineError } from '../errors.js';

/** Timeouts of an HTTP engine call. */
export interface HttpTimeouts {
  /** Longest wait for the response headers and between two body chunks. */
  idleTimeoutMs: number;
  /** Longest a whole request may take. */
  requestTimeoutMs: number;
}

/** Timeouts of the HTTP engines (Ollama, OpenAI-compatible) when none are given: 60 s idle, 10 min in all. */
export const DEFAULT_HTTP_TIMEOUTS: Readonly<HttpTimeouts> = { idleTimeoutMs: 60_000, requestTimeoutMs: 600_000 };

/** A fetch whose body is read with idle and total deadlines, and aborted with the caller's signal. */
export interface TimedResponse {
  response: Response;
  /** Body lines (split on \n, \r stripped), complete across chunk boundaries. */
  lines(): AsyncGenerator<string>;
  /** Stops the request (idempotent). */
  abort(): void;
}

/**
 * Fetches `url` with a deadline: no headers or no body bytes for `idleTimeoutMs`, or more than
 * `requestTimeoutMs` in all → {@link EngineError} `deadline`. Connection failures →
 * `unavailable`; non-2xx → `engine_error` (or `model_not_found` on 404) with the body's message
 * (`error`, `error.message`, `message` or `detail`, else the body), also in the error's
 * context as `status` and `upstreamMessage`.
 */
export async function fetchStream(url: string, init: RequestInit, timeouts: HttpTimeouts, signal: AbortSignal): Promise<TimedResponse> {
  const controller = new AbortController();
  let timedOut = false;
  let idle: NodeJS.Timeout | undefined;
  const total = setTimeout(() => {
    timedOut = true;
    controller.abort();
  }, timeouts.requestTimeoutMs);
  const armIdle = () => {
    clearTimeout(idle);
    idle = setTimeout(() => {
      timedOut = true;
      controller.abort();
    }, timeouts.idleTimeoutMs);
  };
  const onAbort = () => controller.abort();
  signal.addEventListener('abort', onAbort, { once: true });
  if (signal.aborted) controller.abort();
  const cleanup = () => {
    clearTimeout(idle);
    clearTimeout(total);
    signal.removeEventListener('abort', onAbort);
  };
  const translate = (cause: unknown): Error => {
    if (timedOut) return new EngineError(`engine did not answer within the deadline (${url})`, 'deadline', { url }, { cause });
    if (signal.aborted) return cause as Error;
    return new EngineError(`cannot reach engine at ${url}: ${(cause as Error).message}`, 'unavailable', { url }, { cause });
  };
  armIdle();
  let response: Response;
  try {
    response = await fetch(url, { ...init, signal: controller.signal });
  } catch (cause) {
    cleanup();
    throw translate(cause);
  }
  if (!response.ok) {
    let body = '';
    try {
      body = (await response.text()).slice(0, 500);
    } catch {
      /* ignore */
    }
    cleanup();
    let message = body;
    try {
      const parsed = JSON.parse(body) as { error?: string | { message?: string }; message?: unknown; detail?: unknown };
      message =
        typeof parsed.error === 'string'
          ? parsed.error
          : (parsed.error?.message ?? (typeof parsed.message === 'string' ? parsed.message : typeof parsed.detail === 'string' ? parsed.detail : body));
    } catch {
      /* not JSON */
    }
    throw new EngineError(`engine answered HTTP ${response.status}: ${message}`, response.status === 404 ? 'model_not_found' : 'engine_error', {
      url,
      status: response.status,
      upstreamMessage: message,
    });
  }
  armIdle();
  return {
    response,
    abort() {
      controller.abort();
      cleanup();
    },
    async *lines() {
      const body = response.body;
      if (!body) return;
      const decoder = new TextDecoder();
      let buffer = '';
      const reader = body.getReader();
      try {
        for (;;) {
          let chunk: Awaited<ReturnType<typeof reader.read>>;
          try {
            chunk = await reader.read();
          } catch (cause) {
            throw translate(cause);
          }
          if (chunk.done) break;
          armIdle();
          buffer += decoder.decode(chunk.value, { stream: true });
          let nl: number;
          while ((nl = buffer.indexOf('\n')) >= 0) {
            const line = buffer.slice(0, nl).replace(/\r$/, '');
            buffer = buffer.slice(nl + 1);
            yield line;
          }
        }
        buffer += decoder.decode();
        if (buffer.length > 0) yield buffer.replace(/\r$/, '');
      } finally {
        cleanup();
        controller.abort();
        reader.releaseLock();
      }
    },
  };
}

/** Server-sent events: `data:` payloads of each event (lines joined by \n), from body lines. */
export async function* sseEvents(lines: AsyncIterable<string>): AsyncGenerator<{ event: string; data: string }> {
  let data: string[] = [];
  let event = 'message';
  for await (const line of lines) {
    if (line === '') {
      if (data.length > 0) yield { event, data: data.join('\n') };
      data = [];
      event = 'message';
      continue;
    }
    if (line.startsWith(':')) continue;
    const colon = line.indexOf(':');
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? '' : line.slice(colon + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    if (field === 'data') data.push(value);
    else if (field === 'event') event = value;
  }
  if (data.length > 0) yield { event, data: data.join('\n') };
}

/**
 * Fetches JSON with a deadline (`timeouts`, or one number for both); errors as in
 * {@link fetchStream}, and a body that is not JSON is an `engine_error`. Aborting `signal`
 * rejects with the abort error as it is.
 */
export async function fetchJson<T>(
  url: string,
  init: RequestInit,
  timeouts: number | HttpTimeouts,
  signal: AbortSignal = new AbortController().signal,
): Promise<T> {
  const limits = typeof timeouts === 'number' ? { idleTimeoutMs: timeouts, requestTimeoutMs: timeouts } : timeouts;
  const res = await fetchStream(url, init, limits, signal);
  let text = '';
  try {
    for await (const line of res.lines()) text += `${line}\n`;
  } finally {
    res.abort();
  }
  try {
    return JSON.parse(text) as T;
  } catch (cause) {
    throw new EngineError(`engine sent invalid JSON (${url}): ${(cause as Error).message}`, 'engine_error', { url }, { cause });
  }
}

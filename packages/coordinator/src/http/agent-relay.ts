import { Agent, request, type IncomingHttpHeaders, type IncomingMessage } from 'node:http';
import type { ServerResponse } from 'node:http';
import { AgentUnreachableError } from '../errors.js';

/** Options of {@link createAgentRelay}. */
export interface AgentRelayOptions {
  /**
   * Longest wait for a new connection to an agent to open. Default 5 s. There is no limit on the
   * answer itself: a non-streaming answer's headers come only once the whole generation is done.
   */
  connectTimeoutMs?: number;
}

/** One request relayed to an agent's `/v1/*` route. */
export interface RelayRequest {
  /** `host:port` of the agent's HTTP server. */
  httpEndpoint: string;
  /** Path and query, e.g. `/v1/chat/completions`. */
  path: string;
  /** The client's body, forwarded byte for byte (the agent parses it with the same parser). */
  body: string;
  /** The session token, sent as `Authorization: Bearer …`. */
  sessionToken: string;
  /** Aborted when the client goes away: the upstream request is destroyed, so the agent cancels the job. */
  signal: AbortSignal;
  /** Trace context headers (`traceparent`, `tracestate`) sent along, so the agent's span joins the trace. */
  traceHeaders?: Readonly<Record<string, string>> | undefined;
}

/** Relays OpenAI requests to agents over keep-alive HTTP connections. */
export interface AgentRelay {
  /**
   * Sends the request and resolves with the agent's response once its headers arrived (the body
   * is still streaming). Rejects with {@link AgentUnreachableError} when the agent could not be
   * reached or closed the connection before answering.
   */
  send(req: RelayRequest): Promise<IncomingMessage>;
  /**
   * Writes an agent's response to the client as it streams: status, end-to-end headers plus
   * `extraHeaders`, then the body, flushed per chunk. Resolves when the client has it all or
   * left (the upstream is destroyed then).
   */
  pipe(upstream: IncomingMessage, client: ServerResponse, extraHeaders?: Readonly<Record<string, string>>): Promise<void>;
  /** Answers being relayed now (the coordinator's shutdown waits for them, up to its timeout). */
  readonly active: number;
  /** Closes idle connections. */
  close(): void;
}

/** Headers that belong to one connection and are never relayed (RFC 9110 §7.6.1). */
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-authenticate', 'proxy-authorization', 'te', 'trailer', 'transfer-encoding', 'upgrade']);

function endToEnd(headers: IncomingHttpHeaders): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  for (const [name, value] of Object.entries(headers)) if (value !== undefined && !HOP_BY_HOP.has(name)) out[name] = value;
  return out;
}

/**
 * Creates the relay of the coordinator's OpenAI routes in `relay` mode: the request goes to the
 * chosen agent's own `/v1/*` route with the session token, and the agent's answer (a JSON body
 * or a Server-Sent Events stream) is written back to the client as it comes, unchanged. A client
 * that disconnects destroys the upstream request, and the agent aborts the generation.
 *
 * @example
 * ```ts
 * const relay = createAgentRelay();
 * const upstream = await relay.send({ httpEndpoint: '127.0.0.1:50062', path: '/v1/completions', body, sessionToken, signal });
 * await relay.pipe(upstream, reply.raw);
 * ```
 */
export function createAgentRelay(options: AgentRelayOptions = {}): AgentRelay {
  const agent = new Agent({ keepAlive: true, maxSockets: Number.POSITIVE_INFINITY, maxFreeSockets: 256, scheduling: 'lifo' });
  const connectTimeoutMs = options.connectTimeoutMs ?? 5000;
  let active = 0;
  return {
    get active() {
      return active;
    },
    send(req) {
      const url = new URL(`http://${req.httpEndpoint}${req.path}`);
      return new Promise<IncomingMessage>((resolve, reject) => {
        const upstream = request(
          {
            agent,
            hostname: url.hostname.replace(/^\[|\]$/g, ''),
            port: url.port,
            path: `${url.pathname}${url.search}`,
            method: 'POST',
            headers: {
              ...req.traceHeaders,
              'content-type': 'application/json',
              'content-length': Buffer.byteLength(req.body),
              authorization: `Bearer ${req.sessionToken}`,
            },
            signal: req.signal,
          },
          resolve,
        );
        upstream.once('socket', (socket) => {
          if (!socket.connecting) return; // a kept-alive connection
          const timer = setTimeout(() => upstream.destroy(new Error(`no connection within ${connectTimeoutMs} ms`)), connectTimeoutMs);
          socket.once('connect', () => clearTimeout(timer));
          socket.once('close', () => clearTimeout(timer));
        });
        upstream.on('error', (err) => {
          reject(new AgentUnreachableError(`agent at ${req.httpEndpoint} did not answer: ${err.message}`, { httpEndpoint: req.httpEndpoint }, { cause: err }));
        });
        upstream.end(req.body);
      });
    },
    pipe(upstream, client, extraHeaders = {}) {
      active += 1;
      return new Promise<void>((resolve) => {
        client.writeHead(upstream.statusCode ?? 502, { ...endToEnd(upstream.headers), ...extraHeaders });
        client.flushHeaders();
        const done = () => {
          upstream.destroy();
          // A client gone mid-answer may have only half-closed its socket: close it, not leave it open.
          if (!client.writableFinished) client.destroy();
          active -= 1;
          resolve();
        };
        client.once('close', done);
        // An agent gone mid-answer (error, or closed before its body was complete): the client cannot get the rest.
        upstream.once('error', () => client.destroy());
        upstream.once('close', () => {
          if (!upstream.complete) client.destroy();
        });
        upstream.pipe(client);
      });
    },
    close() {
      agent.destroy();
    },
  };
}

import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';

/** A throwaway HTTP server on 127.0.0.1. */
export interface TestHttpServer {
  url: string;
  /** Request bodies received, parsed as JSON when possible, with their paths. */
  requests: { method: string; path: string; body: unknown; headers: IncomingMessage['headers'] }[];
  close(): Promise<void>;
}

/** Starts an HTTP server whose handler gets the parsed JSON body. */
export async function startTestHttpServer(
  handler: (req: IncomingMessage, res: ServerResponse, body: unknown) => void | Promise<void>,
): Promise<TestHttpServer> {
  const requests: TestHttpServer['requests'] = [];
  const server = createServer((req, res) => {
    let raw = '';
    req.on('data', (c: Buffer) => (raw += c.toString()));
    req.on('end', () => {
      let body: unknown = raw;
      try {
        body = raw ? JSON.parse(raw) : undefined;
      } catch {
        /* keep raw */
      }
      requests.push({ method: req.method ?? '', path: req.url ?? '', body, headers: req.headers });
      void handler(req, res, body);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : 0;
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** Writes `parts` to `res` one by one with `gapMs` between them (to split lines across chunks). */
export async function writeSlowly(res: ServerResponse, parts: string[], gapMs = 5): Promise<void> {
  for (const p of parts) {
    if (res.destroyed) return;
    res.write(p);
    await new Promise((r) => setTimeout(r, gapMs));
  }
}

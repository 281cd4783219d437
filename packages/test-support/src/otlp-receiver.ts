/**
 * An in-process OTLP/HTTP traces receiver for tests: a plain node:http server on 127.0.0.1 that
 * accepts `POST /v1/traces` in OTLP/JSON (what `@opentelemetry/exporter-trace-otlp-http` sends)
 * and keeps the spans, flattened, plus every raw body (to check what never leaves a process).
 */
import { createServer, type IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import { gunzipSync } from 'node:zlib';
import { waitFor } from './wait-for.js';

/** An attribute value as decoded from OTLP/JSON's AnyValue. */
export type OtlpValue = string | number | boolean | OtlpValue[] | undefined;

/** One span the receiver got, with its resource's `service.name`. */
export interface ReceivedSpan {
  traceId: string;
  spanId: string;
  /** Undefined for a root span. */
  parentSpanId: string | undefined;
  name: string;
  /** OTLP SpanKind: 1 internal, 2 server, 3 client, 4 producer, 5 consumer. */
  kind: number;
  serviceName: string;
  attributes: Record<string, OtlpValue>;
  /** OTLP status code: 0 unset, 1 ok, 2 error. */
  statusCode: number;
  startTimeUnixNano: bigint;
  endTimeUnixNano: bigint;
}

/** A running receiver; {@link OtlpReceiver.close} when done. */
export interface OtlpReceiver {
  /** The base URL to set as `OTEL_EXPORTER_OTLP_ENDPOINT` (`http://127.0.0.1:port`). */
  readonly endpoint: string;
  /** Every span received so far, in arrival order. */
  spans(): ReceivedSpan[];
  /** Every request body received so far (decoded JSON text), e.g. to check no prompt was exported. */
  bodies(): string[];
  /** Waits (up to `timeoutMs`, default 15 s) until the spans received satisfy `ready`; returns them. */
  waitForSpans(ready: (spans: ReceivedSpan[]) => boolean, timeoutMs?: number): Promise<ReceivedSpan[]>;
  /** Forgets what was received. */
  clear(): void;
  close(): Promise<void>;
}

interface JsonAnyValue {
  stringValue?: string;
  boolValue?: boolean;
  intValue?: string | number;
  doubleValue?: number;
  arrayValue?: { values?: JsonAnyValue[] };
}
interface JsonKeyValue {
  key: string;
  value?: JsonAnyValue;
}
interface JsonSpan {
  traceId: string;
  spanId: string;
  parentSpanId?: string;
  name: string;
  kind?: number;
  startTimeUnixNano: string | number;
  endTimeUnixNano: string | number;
  attributes?: JsonKeyValue[];
  status?: { code?: number };
}
interface JsonTraces {
  resourceSpans?: { resource?: { attributes?: JsonKeyValue[] }; scopeSpans?: { spans?: JsonSpan[] }[] }[];
}

/** An OTLP/JSON AnyValue as a plain value. */
function decodeValue(value: JsonAnyValue | undefined): OtlpValue {
  if (value === undefined) return undefined;
  if (value.stringValue !== undefined) return value.stringValue;
  if (value.boolValue !== undefined) return value.boolValue;
  if (value.intValue !== undefined) return Number(value.intValue);
  if (value.doubleValue !== undefined) return value.doubleValue;
  if (value.arrayValue !== undefined) return (value.arrayValue.values ?? []).map(decodeValue);
  return undefined;
}

function decodeAttributes(list: JsonKeyValue[] | undefined): Record<string, OtlpValue> {
  const out: Record<string, OtlpValue> = {};
  for (const kv of list ?? []) out[kv.key] = decodeValue(kv.value);
  return out;
}

/** The spans of one ExportTraceServiceRequest in OTLP/JSON. */
export function decodeOtlpTraces(body: JsonTraces): ReceivedSpan[] {
  const out: ReceivedSpan[] = [];
  for (const rs of body.resourceSpans ?? []) {
    const serviceName = String(decodeAttributes(rs.resource?.attributes)['service.name'] ?? '');
    for (const ss of rs.scopeSpans ?? []) {
      for (const s of ss.spans ?? []) {
        out.push({
          traceId: s.traceId,
          spanId: s.spanId,
          parentSpanId: s.parentSpanId ? s.parentSpanId : undefined,
          name: s.name,
          kind: s.kind ?? 0,
          serviceName,
          attributes: decodeAttributes(s.attributes),
          statusCode: s.status?.code ?? 0,
          startTimeUnixNano: BigInt(s.startTimeUnixNano),
          endTimeUnixNano: BigInt(s.endTimeUnixNano),
        });
      }
    }
  }
  return out;
}

function readBody(req: IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

/**
 * Starts a receiver on 127.0.0.1 (a free port). It answers `POST /v1/traces` with JSON bodies
 * (gzip or not) `200 {}`, a protobuf body 415, anything else 404.
 *
 * @example
 * ```ts
 * const receiver = await startOtlpReceiver();
 * const tracing = await startTracing({ serviceName: 'test', env: { OTEL_EXPORTER_OTLP_ENDPOINT: receiver.endpoint } });
 * // … traced work, then tracing.forceFlush()
 * const spans = await receiver.waitForSpans((s) => s.length >= 3);
 * await receiver.close();
 * ```
 */
export async function startOtlpReceiver(): Promise<OtlpReceiver> {
  let spans: ReceivedSpan[] = [];
  let bodies: string[] = [];
  const server = createServer((req, res) => {
    if (req.method !== 'POST' || req.url?.split('?')[0] !== '/v1/traces') {
      res.writeHead(404).end();
      return;
    }
    if (!(req.headers['content-type'] ?? '').includes('json')) {
      res.writeHead(415, { 'content-type': 'text/plain' }).end('this test receiver takes OTLP/JSON only');
      return;
    }
    readBody(req)
      .then((raw) => {
        const text = (req.headers['content-encoding'] === 'gzip' ? gunzipSync(raw) : raw).toString('utf8');
        bodies.push(text);
        spans.push(...decodeOtlpTraces(JSON.parse(text) as JsonTraces));
        res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
      })
      .catch((err: unknown) => res.writeHead(400, { 'content-type': 'text/plain' }).end(String(err)));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    endpoint: `http://127.0.0.1:${port}`,
    spans: () => [...spans],
    bodies: () => [...bodies],
    async waitForSpans(ready, timeoutMs = 15_000) {
      await waitFor(
        () => ready(spans),
        timeoutMs,
        () => `spans (received so far: ${spans.map((s) => `${s.serviceName}:${s.name}`).join(', ') || 'none'})`,
        {
          intervalMs: 20,
        },
      );
      return [...spans];
    },
    clear() {
      spans = [];
      bodies = [];
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

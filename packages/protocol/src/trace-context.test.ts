import { afterEach, describe, expect, it } from '@jest/globals';
import { propagation, ROOT_CONTEXT, trace, TraceFlags, type TextMapPropagator } from '@opentelemetry/api';
import { Metadata } from 'nice-grpc-common';
import { extractTraceContext, httpHeadersGetter, injectTraceContext, metadataGetter, traceHeaders } from './trace-context.js';

const SPAN = { traceId: '0af7651916cd43dd8448eb211c80319c', spanId: 'b7ad6b7169203331', traceFlags: TraceFlags.SAMPLED };
const TRACEPARENT = `00-${SPAN.traceId}-${SPAN.spanId}-01`;

/** A minimal W3C `traceparent` propagator (the SDK registers the real one). */
const w3c: TextMapPropagator = {
  inject(ctx, carrier, setter) {
    const span = trace.getSpanContext(ctx);
    if (span) setter.set(carrier, 'traceparent', `00-${span.traceId}-${span.spanId}-0${span.traceFlags}`);
  },
  extract(ctx, carrier, getter) {
    const value = getter.get(carrier, 'traceparent');
    const match = typeof value === 'string' ? /^00-([0-9a-f]{32})-([0-9a-f]{16})-0(\d)$/.exec(value) : null;
    return match ? trace.setSpanContext(ctx, { traceId: match[1]!, spanId: match[2]!, traceFlags: Number(match[3]), isRemote: true }) : ctx;
  },
  fields: () => ['traceparent'],
};

afterEach(() => propagation.disable());

const traced = () => trace.setSpanContext(ROOT_CONTEXT, SPAN);

describe('trace context in gRPC metadata', () => {
  it('without a propagator: nothing injected, no metadata created, extract returns the base', () => {
    expect(injectTraceContext(traced())).toBeUndefined();
    const md = Metadata({ authorization: 'Bearer k' });
    expect(injectTraceContext(traced(), md)).toBe(md);
    expect([...md].map(([k]) => k)).toEqual(['authorization']);
    expect(traceHeaders(traced())).toEqual({});
    expect(trace.getSpanContext(extractTraceContext(Metadata({ traceparent: TRACEPARENT })))).toBeUndefined();
  });

  it('with a propagator: injects traceparent (into new or given metadata) and extracts it as a remote parent', () => {
    propagation.setGlobalPropagator(w3c);
    expect(injectTraceContext(traced())?.get('traceparent')).toBe(TRACEPARENT);
    const md = Metadata({ authorization: 'Bearer k' });
    expect(injectTraceContext(traced(), md)).toBe(md);
    expect(md.get('traceparent')).toBe(TRACEPARENT);
    expect(md.get('authorization')).toBe('Bearer k');
    // An untraced context carries nothing.
    expect(injectTraceContext(ROOT_CONTEXT)).toBeUndefined();
    expect(trace.getSpanContext(extractTraceContext(md))).toEqual({ ...SPAN, isRemote: true });
    expect(traceHeaders(traced())).toEqual({ traceparent: TRACEPARENT });
  });

  it('reads text values only, and HTTP headers by lower-case name', () => {
    const md = Metadata({ traceparent: TRACEPARENT, 'trace-bin': new Uint8Array([1]) });
    expect(metadataGetter.get(md, 'traceparent')).toBe(TRACEPARENT);
    expect(metadataGetter.get(md, 'trace-bin')).toBeUndefined();
    expect(metadataGetter.keys(md)).toEqual(['traceparent', 'trace-bin']);
    expect(httpHeadersGetter.get({ traceparent: TRACEPARENT }, 'TraceParent')).toBe(TRACEPARENT);
  });
});

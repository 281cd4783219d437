/**
 * Raw gRPC calls with already-encoded request bytes (grpc-js without a codec), so the fuzz
 * suite can send any message or any bytes to any method and read back only the status.
 */
import * as grpc from '@grpc/grpc-js';
import type { DescMethod } from '@bufbuild/protobuf';
import { PROTO_VERSION, PROTO_VERSION_METADATA_KEY } from '@titancompute/protocol';
import { methodPath } from './proto-arbitrary.js';

/** What a call ended with. */
export interface CallOutcome {
  code: grpc.status;
  details: string;
  /** True when the test cancelled the call itself (streams that would run forever). */
  cancelledByTest: boolean;
}

const identity = (b: Buffer) => b;

/** Metadata with the current proto_version and, when given, `authorization: Bearer <bearer>`. */
export function callMetadata(bearer?: string): grpc.Metadata {
  const md = new grpc.Metadata();
  md.set(PROTO_VERSION_METADATA_KEY, PROTO_VERSION);
  if (bearer) md.set('authorization', `Bearer ${bearer}`);
  return md;
}

/**
 * Calls `method` at `client` with `messages` (one for unary and server-streaming calls, all of
 * them for client/bidi streams). Streams are cancelled after `streamWindowMs`; every call has a
 * deadline of `deadlineMs`.
 */
export function rawCall(
  client: grpc.Client,
  method: DescMethod,
  messages: Uint8Array[],
  md: grpc.Metadata,
  deadlineMs = 5000,
  streamWindowMs = 150,
): Promise<CallOutcome> {
  const path = methodPath(method);
  const options = { deadline: Date.now() + deadlineMs };
  return new Promise((resolve) => {
    let cancelledByTest = false;
    const done = (code: grpc.status, details: string) => resolve({ code, details, cancelledByTest });
    switch (method.methodKind) {
      case 'unary': {
        client.makeUnaryRequest(path, identity, identity, Buffer.from(messages[0] ?? new Uint8Array()), md, options, (err) =>
          err ? done(err.code ?? grpc.status.UNKNOWN, err.details ?? err.message) : done(grpc.status.OK, ''),
        );
        return;
      }
      case 'server_streaming': {
        const call = client.makeServerStreamRequest(path, identity, identity, Buffer.from(messages[0] ?? new Uint8Array()), md, options);
        call.on('data', () => undefined);
        call.on('error', () => undefined);
        call.on('status', (s: grpc.StatusObject) => done(s.code, s.details));
        setTimeout(() => {
          cancelledByTest = true;
          call.cancel();
        }, streamWindowMs).unref();
        return;
      }
      case 'client_streaming':
      case 'bidi_streaming': {
        const call = client.makeBidiStreamRequest(path, identity, identity, md, options);
        call.on('data', () => undefined);
        call.on('error', () => undefined);
        call.on('status', (s: grpc.StatusObject) => done(s.code, s.details));
        for (const m of messages) call.write(Buffer.from(m));
        call.end();
        setTimeout(() => {
          cancelledByTest = true;
          call.cancel();
        }, streamWindowMs).unref();
        return;
      }
    }
  });
}

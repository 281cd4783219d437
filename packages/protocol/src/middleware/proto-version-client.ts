import { Metadata, type ClientMiddleware } from 'nice-grpc-common';
import { COMPATIBLE_PROTO_VERSIONS, PROTO_COMPATIBLE_METADATA_KEY, PROTO_VERSION, PROTO_VERSION_METADATA_KEY } from '../proto-version.js';

/** Options of {@link createProtoVersionClientMiddleware}. */
export interface ProtoVersionClientOptions {
  /** Version sent as `proto_version`. Default: this package's {@link PROTO_VERSION}. */
  protoVersion?: string;
  /** Versions sent as `proto_compatible_versions`. Default: {@link COMPATIBLE_PROTO_VERSIONS}. */
  protoVersionCompatible?: readonly string[];
}

/**
 * Client middleware that adds `proto_version` (and the compatible set) to the metadata of
 * every call, unary and streaming.
 *
 * @example
 * ```ts
 * const client = createClientFactory()
 *   .use(createProtoVersionClientMiddleware())
 *   .create(CoordinatorServiceDefinition, channel);
 * ```
 */
export function createProtoVersionClientMiddleware(options: ProtoVersionClientOptions = {}): ClientMiddleware {
  const version = options.protoVersion ?? PROTO_VERSION;
  const compatible = (options.protoVersionCompatible ?? COMPATIBLE_PROTO_VERSIONS).join(',');
  return async function* protoVersionClientMiddleware(call, callOptions) {
    const metadata = Metadata(callOptions.metadata).set(PROTO_VERSION_METADATA_KEY, version).set(PROTO_COMPATIBLE_METADATA_KEY, compatible);
    return yield* call.next(call.request, { ...callOptions, metadata });
  };
}

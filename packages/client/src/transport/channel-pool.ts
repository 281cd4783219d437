import { createClientFactory, type Channel, type ClientFactory } from 'nice-grpc';
import { createProtoVersionClientMiddleware, createTitanChannel } from '@titancompute/protocol';
import { ClientConfigError, toTitanError, type CallTarget } from '../errors.js';
import type { TlsOptions } from '../types.js';

/**
 * One gRPC channel per `host:port`, reused by every call to that address and closed together
 * by {@link ChannelPool.close}. All clients made from it send `proto_version` metadata.
 */
export interface ChannelPool {
  /**
   * The channel for `address` (created on first use). `target` names the server in the error
   * thrown when the channel cannot be made (e.g. unreadable TLS files).
   */
  channel(address: string, target: CallTarget): Channel;
  /** A nice-grpc client factory with the proto_version middleware. */
  readonly factory: ClientFactory;
  /** Closes every channel; later calls reopen them. */
  close(): void;
}

/** Creates a {@link ChannelPool}; TLS applies to every channel it opens. */
export function createChannelPool(tls?: TlsOptions): ChannelPool {
  const channels = new Map<string, Channel>();
  const factory = createClientFactory().use(createProtoVersionClientMiddleware());
  return {
    factory,
    channel(address, target) {
      let channel = channels.get(address);
      if (!channel) {
        try {
          channel = createTitanChannel(address, tls ? { tls } : {});
        } catch (error) {
          const mapped = toTitanError(error, { target, address });
          throw mapped instanceof ClientConfigError ? mapped : new ClientConfigError(mapped.message, { cause: error });
        }
        channels.set(address, channel);
      }
      return channel;
    },
    close() {
      for (const channel of channels.values()) channel.close();
      channels.clear();
    },
  };
}

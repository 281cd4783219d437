import { setTimeout as sleep } from 'node:timers/promises';
import { Status, type Metadata } from 'nice-grpc-common';
import { instanceManager as im } from '@titancompute/protocol';
import { ConnectionError, NotFoundError, TitanAbortError, type TitanError, UnavailableError, toTitanError } from './errors.js';
import { fromDescription, fromEvent, toInstance, toInstanceType, toService, toServiceType } from './instances/instance-mapping.js';
import { createChannelPool, type ChannelPool } from './transport/channel-pool.js';
import { callUnary, type UnaryCallOptions } from './transport/unary-call.js';
import type {
  GpuMetrics,
  HealthCheckRecord,
  InstanceDetails,
  InstanceEvent,
  InstanceInfo,
  InstanceManagerClientOptions,
  InstanceService,
  ListInstancesFilter,
  LlmMetrics,
  ProxyMetrics,
  SystemMetrics,
  TryResult,
  WatchOptions,
} from './types.js';

/** Default instance manager address. */
export const DEFAULT_INSTANCE_MANAGER = '127.0.0.1:50050';

/** Call options every method accepts. */
export interface CallOptions {
  signal?: AbortSignal;
}

/**
 * Typed client of the instance manager (TryService, PostService, GetService,
 * SubscribeService). Enums are string unions (`'INFERENCE_AGENT'`, `'ADDED'` …), errors are
 * {@link TitanError}s, and {@link InstanceManagerClient.watch} resumes after a dropped
 * connection from the last sequence number it saw.
 *
 * @example
 * ```ts
 * const im = new InstanceManagerClient({ address: '127.0.0.1:50050' });
 * await im.addInstance({ id: 'agent-1', type: 'INFERENCE_AGENT', hostname: 'gpu-1' });
 * for await (const event of im.watch({ includeSnapshot: true })) console.log(event.type, event.instanceId);
 * ```
 */
export class InstanceManagerClient {
  /** Address in use. */
  readonly address: string;
  readonly #pool: ChannelPool;
  readonly #requestTimeoutMs: number;
  readonly #try: im.TryServiceClient;
  readonly #post: im.PostServiceClient;
  readonly #get: im.GetServiceClient;
  readonly #subscribe: im.SubscribeServiceClient;

  constructor(options: InstanceManagerClientOptions = {}) {
    this.address = options.address ?? DEFAULT_INSTANCE_MANAGER;
    this.#requestTimeoutMs = options.requestTimeoutMs ?? 10_000;
    this.#pool = createChannelPool(options.tls);
    const channel = this.#pool.channel(this.address, 'instance-manager');
    this.#try = this.#pool.factory.create(im.TryServiceDefinition, channel);
    this.#post = this.#pool.factory.create(im.PostServiceDefinition, channel);
    this.#get = this.#pool.factory.create(im.GetServiceDefinition, channel);
    this.#subscribe = this.#pool.factory.create(im.SubscribeServiceDefinition, channel);
  }

  #call<T>(options: CallOptions | undefined, call: (o: UnaryCallOptions) => Promise<T>): Promise<T> {
    return callUnary({ target: 'instance-manager', address: this.address, timeoutMs: this.#requestTimeoutMs, signal: options?.signal }, call);
  }

  // ---- TryService ------------------------------------------------------------------

  /** Registers an instance (idempotent for the same description; `success` false when the id exists differently). */
  addInstance(instance: Partial<InstanceInfo> & Pick<InstanceInfo, 'id' | 'type'>, options?: CallOptions): Promise<TryResult> {
    return this.#call(options, (o) => this.#try.tryAddInstance({ instance: toInstance(instance) }, o));
  }

  /** Kills an instance and all its descendants. */
  async killInstance(instanceId: string, reason = '', options?: CallOptions): Promise<TryResult & { killedInstanceIds: string[] }> {
    const r = await this.#call(options, (o) => this.#try.tryKillInstance({ instanceId, reason }, o));
    return { success: r.success, message: r.message, killedInstanceIds: [...r.killedInstanceIds] };
  }

  /** Records a health check; `healthy` false means the instance must stop. */
  async healthCheck(instanceId: string, options?: CallOptions): Promise<{ healthy: boolean; message: string }> {
    const r = await this.#call(options, (o) => this.#try.tryHealthCheck({ instanceId }, o));
    return { healthy: r.healthy, message: r.message };
  }

  /** Links a child to a parent. */
  addChild(parentId: string, childId: string, options?: CallOptions): Promise<TryResult> {
    return this.#call(options, (o) => this.#try.tryAddChild({ parentId, childId }, o));
  }

  /** Registers a service on a live instance. */
  addService(instanceId: string, service: Partial<InstanceService> & Pick<InstanceService, 'type'>, options?: CallOptions): Promise<TryResult> {
    return this.#call(options, (o) => this.#try.tryAddService({ instanceId, service: toService(service) }, o));
  }

  // ---- PostService -----------------------------------------------------------------

  /** Posts proxy metrics (timestampMs 0 = now, set by the server). */
  async postProxyMetrics(instanceId: string, metrics: Partial<ProxyMetrics>, options?: CallOptions): Promise<void> {
    const m = { activeConnections: 0, totalConnections: 0, bytesSent: 0, bytesReceived: 0, timestampMs: 0, ...metrics };
    await this.#call(options, (o) => this.#post.postProxyMetrics({ instanceId, metrics: m }, o));
  }

  /** Posts system metrics. */
  async postSystemMetrics(instanceId: string, metrics: Partial<SystemMetrics>, options?: CallOptions): Promise<void> {
    const m = { usedMemoryBytes: 0, totalMemoryBytes: 0, cpuPercent: 0, timestampMs: 0, ...metrics };
    await this.#call(options, (o) => this.#post.postSystemMetrics({ instanceId, metrics: m }, o));
  }

  /** Posts GPU metrics. */
  async postGpuMetrics(instanceId: string, metrics: Partial<GpuMetrics>, options?: CallOptions): Promise<void> {
    const m = { usedMemoryBytes: 0, totalMemoryBytes: 0, utilizationPercent: 0, timestampMs: 0, devices: [], ...metrics };
    await this.#call(options, (o) => this.#post.postGpuMetrics({ instanceId, metrics: m }, o));
  }

  /** Posts LLM metrics. */
  async postLlmMetrics(instanceId: string, metrics: Partial<LlmMetrics>, options?: CallOptions): Promise<void> {
    const m = { requestCount: 0, tokensReceived: 0, tokensSent: 0, timestampMs: 0, ...metrics };
    await this.#call(options, (o) => this.#post.postLlmMetrics({ instanceId, metrics: m }, o));
  }

  // ---- GetService ------------------------------------------------------------------

  /** Live instances matching the filter. */
  async listInstances(filter: ListInstancesFilter = {}, options?: CallOptions): Promise<InstanceDetails[]> {
    const r = await this.#call(options, (o) =>
      this.#get.getAllInstances(
        {
          type: toInstanceType(filter.type ?? 'UNSPECIFIED'),
          parentId: filter.parentId ?? '',
          serviceType: toServiceType(filter.serviceType ?? 'UNSPECIFIED'),
          healthyOnly: filter.healthyOnly ?? false,
        },
        o,
      ),
    );
    return r.instances.map(fromDescription);
  }

  /** One live instance; {@link NotFoundError} when unknown or dead. */
  async getInstance(instanceId: string, options?: CallOptions): Promise<InstanceDetails> {
    const r = await this.#call(options, (o) => this.#get.getInstance({ instanceId }, o));
    if (!r.instance) throw new NotFoundError(`instance ${instanceId} not found`, Status.NOT_FOUND, { context: { instanceId } });
    return fromDescription(r.instance);
  }

  /** The latest health check of an instance. */
  async getHealthCheck(instanceId: string, options?: CallOptions): Promise<HealthCheckRecord | undefined> {
    const r = await this.#call(options, (o) => this.#get.getHealthCheck({ instanceId }, o));
    return r.healthCheck ? { ...r.healthCheck } : undefined;
  }

  /** Latest proxy metrics, undefined when none were posted. */
  async getProxyMetrics(instanceId: string, options?: CallOptions): Promise<ProxyMetrics | undefined> {
    const r = await this.#call(options, (o) => this.#get.getProxyMetrics({ instanceId }, o));
    return r.metrics ? { ...r.metrics } : undefined;
  }

  /** Latest system metrics, undefined when none were posted. */
  async getSystemMetrics(instanceId: string, options?: CallOptions): Promise<SystemMetrics | undefined> {
    const r = await this.#call(options, (o) => this.#get.getSystemMetrics({ instanceId }, o));
    return r.metrics ? { ...r.metrics } : undefined;
  }

  /** Latest GPU metrics, undefined when none were posted. */
  async getGpuMetrics(instanceId: string, options?: CallOptions): Promise<GpuMetrics | undefined> {
    const r = await this.#call(options, (o) => this.#get.getGpuMetrics({ instanceId }, o));
    return r.metrics ? { ...r.metrics, devices: r.metrics.devices.map((d) => ({ ...d })) } : undefined;
  }

  /** Latest LLM metrics, undefined when none were posted. */
  async getLlmMetrics(instanceId: string, options?: CallOptions): Promise<LlmMetrics | undefined> {
    const r = await this.#call(options, (o) => this.#get.getLlmMetrics({ instanceId }, o));
    return r.metrics ? { ...r.metrics } : undefined;
  }

  /** The live parent of an instance, undefined when it has none. */
  async getParent(instanceId: string, options?: CallOptions): Promise<InstanceDetails | undefined> {
    const r = await this.#call(options, (o) => this.#get.getParent({ instanceId }, o));
    return r.parent ? fromDescription(r.parent) : undefined;
  }

  /** The live children of an instance. */
  async getChildren(instanceId: string, options?: CallOptions): Promise<InstanceDetails[]> {
    const r = await this.#call(options, (o) => this.#get.getChildren({ instanceId }, o));
    return r.children.map(fromDescription);
  }

  // ---- SubscribeService ------------------------------------------------------------

  /**
   * Live instance events as an async iterator. When the connection drops (or the server
   * ends the stream, e.g. on restart) it resubscribes from the last sequence number seen,
   * so no event is lost or repeated. Ends quietly when `signal` aborts or the loop breaks;
   * throws when the server refuses the subscription (e.g. OUT_OF_RANGE: events pruned) or
   * after `maxReconnects` failed resubscriptions.
   */
  async *watch(options: WatchOptions = {}): AsyncGenerator<InstanceEvent, void, undefined> {
    const signal = options.signal;
    const maxReconnects = options.maxReconnects ?? Infinity;
    const baseDelay = options.reconnectDelayMs ?? 100;
    let lastSequence = options.fromSequence ?? 0;
    let includeSnapshot = options.includeSnapshot ?? false;
    let failures = 0;
    const instanceTypes = (options.instanceTypes ?? []).map(toInstanceType);
    const instanceIds = options.instanceIds ?? [];

    while (!signal?.aborted) {
      const controller = new AbortController();
      const onAbort = () => controller.abort();
      signal?.addEventListener('abort', onAbort, { once: true });
      let header: Metadata | undefined;
      let trailer: Metadata | undefined;
      let failure: TitanError;
      try {
        const stream = this.#subscribe.subscribeToInstanceUpdates(
          { instanceTypes, instanceIds, fromSequence: lastSequence, includeSnapshot },
          { signal: controller.signal, onHeader: (h) => (header = h), onTrailer: (t) => (trailer = t) },
        );
        for await (const message of stream) {
          failures = 0;
          includeSnapshot = false;
          if (message.caughtUp) {
            lastSequence = Math.max(lastSequence, message.sequence);
            continue;
          }
          const event = message.event;
          if (!event) continue;
          if (!message.snapshot) {
            if (event.sequence <= lastSequence) continue; // already delivered before a reconnect
            lastSequence = event.sequence;
          }
          yield fromEvent(event, message.snapshot);
        }
        failure = new UnavailableError(`instance manager ${this.address} ended the subscription`);
      } catch (error) {
        if (signal?.aborted) return;
        failure = toTitanError(error, { target: 'instance-manager', address: this.address, userSignal: signal, header, trailer });
        const transient =
          failure instanceof ConnectionError ||
          failure instanceof UnavailableError ||
          failure instanceof TitanAbortError || // the server cancelled (e.g. shutting down)
          [Status.UNAVAILABLE, Status.INTERNAL, Status.UNKNOWN, Status.CANCELLED].includes(failure.code);
        if (!transient) throw failure;
      } finally {
        controller.abort();
        signal?.removeEventListener('abort', onAbort);
      }
      failures++;
      if (failures > maxReconnects) {
        throw new ConnectionError(`instance manager subscription lost after ${maxReconnects} reconnect(s): ${failure.message}`, this.address, {
          cause: failure,
          context: { lastSequence },
        });
      }
      options.onReconnect?.({ attempt: failures, fromSequence: lastSequence, error: failure });
      try {
        await sleep(Math.min(baseDelay * 2 ** (failures - 1), 5000), undefined, { signal });
      } catch {
        return;
      }
    }
  }

  /** Closes the channel. */
  close(): void {
    this.#pool.close();
  }
}

import { createServer, ServerError, Status, type Server } from 'nice-grpc';
import { instanceManager } from '@titancompute/protocol';

/** An in-process instance manager (TryService + PostService) that records calls. */
export interface FakeInstanceManager {
  port: number;
  address: string;
  instances: instanceManager.Instance[];
  services: instanceManager.TryAddServiceRequest[];
  /** Health checks received, unary and streamed. */
  healthChecks: number;
  /** Of which over TryHealthCheckStream. */
  streamedHealthChecks: number;
  /** TryHealthCheckStream calls opened. */
  healthStreams: number;
  llmMetrics: instanceManager.LlmMetrics[];
  systemMetrics: instanceManager.SystemMetrics[];
  gpuMetrics: instanceManager.GpuMetrics[];
  /** What TryHealthCheck answers as `healthy`. */
  healthy: boolean;
  /**
   * What TryHealthCheck answers as `status` (v2): KILLED stops the agent, STALE and UNKNOWN make
   * it register again. Undefined answers like a v1 instance manager (healthy=false = stop).
   */
  status: instanceManager.HealthStatus | undefined;
  stop(): Promise<void>;
}

/** Options of {@link startFakeInstanceManager}. */
export interface FakeInstanceManagerOptions {
  /** Answer TryHealthCheckStream with UNIMPLEMENTED, as an instance manager from before it existed. */
  withoutHealthStream?: boolean;
}

/** Starts a {@link FakeInstanceManager} on 127.0.0.1 implementing the real generated definitions. */
export async function startFakeInstanceManager(options: FakeInstanceManagerOptions = {}): Promise<FakeInstanceManager> {
  const server: Server = createServer();
  const fake: FakeInstanceManager = {
    port: 0,
    address: '',
    instances: [],
    services: [],
    healthChecks: 0,
    streamedHealthChecks: 0,
    healthStreams: 0,
    llmMetrics: [],
    systemMetrics: [],
    gpuMetrics: [],
    healthy: true,
    status: undefined,
    async stop() {
      server.forceShutdown();
    },
  };
  const answer = () => ({
    healthy: fake.healthy,
    message: fake.healthy ? '' : 'killed by test',
    ...(fake.status !== undefined ? { status: fake.status } : {}),
  });
  server.add(instanceManager.TryServiceDefinition, {
    async tryAddInstance(req) {
      if (req.instance) fake.instances.push(req.instance);
      return { success: true };
    },
    async tryKillInstance() {
      fake.healthy = false;
      fake.status = instanceManager.HealthStatus.HEALTH_STATUS_KILLED;
      return { success: true };
    },
    async tryHealthCheck() {
      fake.healthChecks++;
      return answer();
    },
    async *tryHealthCheckStream(requests) {
      if (options.withoutHealthStream) throw new ServerError(Status.UNIMPLEMENTED, 'Method not found: TryHealthCheckStream');
      fake.healthStreams++;
      for await (const request of requests) {
        fake.healthChecks++;
        fake.streamedHealthChecks++;
        yield { instanceId: request.instanceId, ...answer() };
      }
    },
    async tryAddChild() {
      return { success: true };
    },
    async tryAddService(req) {
      fake.services.push(req);
      return { success: true };
    },
  });
  server.add(instanceManager.PostServiceDefinition, {
    async postProxyMetrics() {
      return {};
    },
    async postSystemMetrics(req) {
      if (req.metrics) fake.systemMetrics.push(req.metrics);
      return {};
    },
    async postGpuMetrics(req) {
      if (req.metrics) fake.gpuMetrics.push(req.metrics);
      return {};
    },
    async postLlmMetrics(req) {
      if (req.metrics) fake.llmMetrics.push(req.metrics);
      return {};
    },
  });
  fake.port = await server.listen('127.0.0.1:0');
  fake.address = `127.0.0.1:${fake.port}`;
  return fake;
}

import type { instanceManager } from '@titancompute/protocol';
import type { z } from 'zod';
import type { Registry } from '../registry/registry.js';
import type { MetricsKind, Store } from '../store/store.js';
import { gpuMetricsSchema, instanceIdSchema, llmMetricsSchema, proxyMetricsSchema, systemMetricsSchema, validate } from '../validation/schemas.js';

/** PostService: latest metrics per live instance; unknown or dead instance → NOT_FOUND. */
export function createPostService(registry: Registry, store: Store): instanceManager.PostServiceImplementation {
  const post = async <T extends { timestampMs: number }>(kind: MetricsKind, schema: z.ZodType<T>, request: { instanceId: string; metrics?: unknown }) => {
    const id = validate(instanceIdSchema, request.instanceId, 'instance_id');
    const metrics = validate(schema, request.metrics, 'metrics');
    await registry.getLive(id);
    await store.putMetrics(id, kind, { ...metrics, timestampMs: metrics.timestampMs || registry.now() });
    return {};
  };
  return {
    postProxyMetrics: (request) => post('proxy', proxyMetricsSchema, request),
    postSystemMetrics: (request) => post('system', systemMetricsSchema, request),
    postGpuMetrics: (request) => post('gpu', gpuMetricsSchema, request),
    postLlmMetrics: (request) => post('llm', llmMetricsSchema, request),
  };
}

import type { instanceManager } from '@titancompute/protocol';
import { z } from 'zod';
import type { Registry } from '../registry/registry.js';
import type { MetricsKind, Store } from '../store/store.js';
import { instanceIdSchema, instanceTypeFilterSchema, serviceTypeFilterSchema, validate } from '../validation/schemas.js';

const listSchema = z.object({
  type: instanceTypeFilterSchema,
  parentId: z.union([z.literal(''), instanceIdSchema]),
  serviceType: serviceTypeFilterSchema,
  healthyOnly: z.boolean(),
});

/** GetService: reads that never return stale or dead instances (those are NOT_FOUND). */
export function createGetService(registry: Registry, store: Store): instanceManager.GetServiceImplementation {
  const idOf = (request: { instanceId: string }) => validate(instanceIdSchema, request.instanceId, 'instance_id');
  const metrics = async (request: { instanceId: string }, kind: MetricsKind) => {
    const id = idOf(request);
    await registry.getLive(id);
    const value = await store.getMetrics(id, kind);
    return { metrics: value === undefined ? undefined : (value as never) };
  };
  return {
    async getAllInstances(request) {
      const c = validate(listSchema, request, '');
      const instances = await registry.listLive({
        ...(c.type ? { type: c.type } : {}),
        ...(c.parentId ? { parentId: c.parentId } : {}),
        ...(c.serviceType ? { serviceType: c.serviceType } : {}),
        healthyOnly: c.healthyOnly,
      });
      return { instances };
    },
    async getHealthCheck(request) {
      const rec = await registry.getLive(idOf(request));
      return { healthCheck: { instanceId: rec.id, timestampMs: rec.lastHealthMs, healthy: true } };
    },
    getProxyMetrics: (request) => metrics(request, 'proxy'),
    getSystemMetrics: (request) => metrics(request, 'system'),
    getGpuMetrics: (request) => metrics(request, 'gpu'),
    getLlmMetrics: (request) => metrics(request, 'llm'),
    async getInstance(request) {
      const rec = await registry.getLive(idOf(request));
      return { instance: await registry.describe(rec) };
    },
    async getParent(request) {
      return { parent: await registry.parent(idOf(request)) };
    },
    async getChildren(request) {
      return { children: await registry.children(idOf(request)) };
    },
  };
}

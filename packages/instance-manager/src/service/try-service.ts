import type { instanceManager } from '@titancompute/protocol';
import type { Registry } from '../registry/registry.js';
import { instanceIdSchema, instanceSchema, serviceSchema, validate } from '../validation/schemas.js';
import { z } from 'zod';

/** TryService: atomic state changes whose `success`/`healthy` drive the caller's control flow. */
export function createTryService(registry: Registry): instanceManager.TryServiceImplementation {
  return {
    async tryAddInstance(request) {
      const instance = validate(instanceSchema, request.instance, 'instance');
      return registry.addInstance({ ...instance, metadata: instance.metadata });
    },
    async tryKillInstance(request) {
      const id = validate(instanceIdSchema, request.instanceId, 'instance_id');
      const reason = validate(z.string().max(1024, 'at most 1024 characters'), request.reason, 'reason');
      return registry.killInstance(id, reason);
    },
    async tryHealthCheck(request) {
      return registry.healthCheck(validate(instanceIdSchema, request.instanceId, 'instance_id'));
    },
    async tryAddChild(request) {
      const parentId = validate(instanceIdSchema, request.parentId, 'parent_id');
      const childId = validate(instanceIdSchema, request.childId, 'child_id');
      return registry.addChild(parentId, childId);
    },
    async tryAddService(request) {
      const id = validate(instanceIdSchema, request.instanceId, 'instance_id');
      const service = validate(serviceSchema, request.service, 'service');
      return registry.addService(id, service);
    },
  };
}

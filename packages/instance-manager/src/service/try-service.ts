import { setMaxListeners } from 'node:events';
import type { instanceManager } from '@titancompute/protocol';
import type { Registry } from '../registry/registry.js';
import { instanceIdSchema, instanceSchema, serviceSchema, validate } from '../validation/schemas.js';
import { z } from 'zod';
import { answerHealthChecks } from './health-check-stream.js';

/** Options of {@link createTryService}. */
export interface TryServiceOptions {
  /** Aborted when the server shuts down: open health-check streams end with UNAVAILABLE. */
  shutdownSignal?: AbortSignal;
  /** Health checks of one stream read ahead of the answers written. Default 1024. */
  maxPipelined?: number;
}

/**
 * TryService: atomic state changes whose `success`/`healthy` drive the caller's control flow.
 * Health checks come one per call (TryHealthCheck) or many over one stream
 * (TryHealthCheckStream, answered in order); both are the registry's `healthCheck`.
 */
export function createTryService(registry: Registry, options: TryServiceOptions = {}): instanceManager.TryServiceImplementation {
  if (options.shutdownSignal) setMaxListeners(0, options.shutdownSignal);
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
    tryHealthCheckStream(requests, context) {
      return answerHealthChecks(requests, {
        healthCheck: registry.healthCheck,
        signal: context.signal,
        shutdownSignal: options.shutdownSignal,
        maxPipelined: options.maxPipelined,
      });
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

import { setMaxListeners } from 'node:events';
import type { instanceManager } from '@titancompute/protocol';
import { z } from 'zod';
import { streamInstanceUpdates, type SubscriptionDeps } from '../events/subscription.js';
import { instanceIdSchema, instanceTypeSchema, validate } from '../validation/schemas.js';

const requestSchema = z.object({
  instanceTypes: z.array(instanceTypeSchema).max(64, 'at most 64 entries'),
  instanceIds: z.array(instanceIdSchema).max(1024, 'at most 1024 entries'),
  fromSequence: z.number().int().min(0, 'must not be negative'),
  includeSnapshot: z.boolean(),
});

/** SubscribeService: snapshot, replay from a sequence, then live events. */
export function createSubscribeService(deps: SubscriptionDeps): instanceManager.SubscribeServiceImplementation {
  // Every open subscription listens for shutdown.
  setMaxListeners(0, deps.shutdownSignal);
  return {
    async *subscribeToInstanceUpdates(request, context) {
      const filter = validate(requestSchema, request, '');
      yield* streamInstanceUpdates(deps, filter, context.signal);
    },
  };
}

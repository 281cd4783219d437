import { describe, expect, it } from '@jest/globals';
import { ServerError, Status, type CallContext, type ServerMiddlewareCall } from 'nice-grpc-common';
import { createDrainController, isDrainExempt } from './drain.js';

/** Runs one unary call through the drain middleware; `handler` is the rest of the chain. */
async function call(drain: ReturnType<typeof createDrainController>, path: string, handler: () => Promise<string>): Promise<string> {
  const mw = drain.middleware as unknown as (call: ServerMiddlewareCall<unknown, unknown>, context: CallContext) => AsyncGenerator<never, string>;
  const gen = mw(
    {
      method: { path, requestStream: false, responseStream: false, options: {} },
      requestStream: false,
      responseStream: false,
      request: {},
      // eslint-disable-next-line require-yield
      next: async function* () {
        return await handler();
      },
    } as unknown as ServerMiddlewareCall<unknown, unknown>,
    {} as CallContext,
  );
  const result = await gen.next();
  return result.value as string;
}

describe('drain', () => {
  it('exempts exactly health checks and reflection', () => {
    expect(isDrainExempt('/grpc.health.v1.Health/Check')).toBe(true);
    expect(isDrainExempt('/grpc.health.v1.Health/Watch')).toBe(true);
    expect(isDrainExempt('/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo')).toBe(true);
    expect(isDrainExempt('/titancompute.v1.CoordinatorService/RequestInference')).toBe(false);
    expect(isDrainExempt('/instance_manager.v1.InstanceManagerService/GetInstance')).toBe(false);
  });

  it('while draining, refuses service calls with UNAVAILABLE, still answers health, and waits for calls in flight', async () => {
    const drain = createDrainController();
    let release!: () => void;
    const inFlight = call(drain, '/titancompute.v1.CoordinatorService/QuerySystemStatus', () => new Promise<string>((r) => (release = () => r('done'))));
    expect(drain.inFlight).toBe(1);
    drain.startDraining();
    const refused = call(drain, '/titancompute.v1.CoordinatorService/RequestInference', async () => 'never');
    await expect(refused).rejects.toBeInstanceOf(ServerError);
    await expect(refused).rejects.toMatchObject({ code: Status.UNAVAILABLE });
    await expect(call(drain, '/grpc.health.v1.Health/Check', async () => 'NOT_SERVING')).resolves.toBe('NOT_SERVING');
    expect(drain.inFlight).toBe(1);
    const idle = drain.waitIdle(60_000);
    release();
    await expect(inFlight).resolves.toBe('done');
    await expect(idle).resolves.toBe(true);
  });

  it('takes another exemption rule when given one', async () => {
    const drain = createDrainController((path) => path.endsWith('/Ping'));
    drain.startDraining();
    await expect(call(drain, '/x.Svc/Ping', async () => 'pong')).resolves.toBe('pong');
    await expect(call(drain, '/grpc.health.v1.Health/Check', async () => 'x')).rejects.toMatchObject({ code: Status.UNAVAILABLE });
  });
});

import { expect } from '@jest/globals';
import { ClientError, Status } from 'nice-grpc';

/**
 * Awaits `p`, expects it to reject with a gRPC `ClientError` of status `code` (and details
 * matching `pattern`, when given), and returns that error for further checks.
 */
export async function expectGrpcError(p: Promise<unknown>, code: Status, pattern?: RegExp): Promise<ClientError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(ClientError);
  const ce = err as ClientError;
  expect(Status[ce.code]).toBe(Status[code]);
  if (pattern) expect(ce.details).toMatch(pattern);
  return ce;
}

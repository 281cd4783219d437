import { describe, expect, it } from '@jest/globals';
import { Status } from 'nice-grpc-common';
import { CapacityError, ClusterUnavailableError, ConnectionError, InvalidArgumentError, NoAgentsError, TimeoutError, TitanAbortError } from '../errors.js';
import { createCoordinatorRotation, parseCoordinatorAddresses } from './coordinator-rotation.js';

const refused = (address: string) =>
  new ConnectionError(`cannot reach coordinator at ${address}: connection refused (nothing listens there), ECONNREFUSED`, address);

describe('coordinator addresses of the SDK', () => {
  it('takes one host:port, a comma-separated list or an array, in order, trimmed, without duplicates', () => {
    expect(parseCoordinatorAddresses('127.0.0.1:50051')).toEqual(['127.0.0.1:50051']);
    expect(parseCoordinatorAddresses(' a:1 ,b:2,,a:1')).toEqual(['a:1', 'b:2']);
    expect(parseCoordinatorAddresses(['a:1', 'b:2,c:3'])).toEqual(['a:1', 'b:2', 'c:3']);
  });

  it('refuses anything else with InvalidArgumentError naming the field and the entry', () => {
    for (const bad of ['', ' , ', 'a:1,nope', ['a:1', 'b'], 42 as unknown as string]) {
      let error: unknown;
      try {
        parseCoordinatorAddresses(bad);
      } catch (e) {
        error = e;
      }
      expect(error).toBeInstanceOf(InvalidArgumentError);
      expect((error as InvalidArgumentError).field).toBe('coordinator');
    }
    expect(() => parseCoordinatorAddresses('a:1,nope')).toThrow(/got "nope"/);
  });
});

describe('coordinator rotation', () => {
  it('skips unreachable and UNAVAILABLE coordinators, and starts the next call at the one that answered', async () => {
    const rotation = createCoordinatorRotation(['a:1', 'b:2', 'c:3'], () => false);
    const asked: string[] = [];
    const answer = await rotation.call(async (address) => {
      asked.push(address);
      if (address === 'a:1') throw refused(address);
      if (address === 'b:2') throw new NoAgentsError('no agent available (coordinator b:2)', 'm');
      return address;
    });
    expect(answer).toBe('c:3');
    expect(rotation.current).toBe('c:3');
    asked.length = 0;
    expect(await rotation.call(async (address) => address)).toBe('c:3');
    expect(asked).toEqual([]);
  });

  it('moves on after a deadline only when the channel never connected', async () => {
    let connected = false;
    const rotation = createCoordinatorRotation(['a:1', 'b:2'], () => connected);
    const slow = async (address: string) => {
      if (address === 'a:1') throw new TimeoutError('coordinator call to a:1 timed out after 10 ms', 10);
      return address;
    };
    expect(await rotation.call(slow)).toBe('b:2');
    const fromA = createCoordinatorRotation(['a:1', 'b:2'], () => connected);
    connected = true;
    await expect(fromA.call(slow)).rejects.toBeInstanceOf(TimeoutError);
    expect(fromA.current).toBe('a:1');
  });

  it('never moves on after an answer (busy, refused credentials) or the caller’s abort', async () => {
    const asked: string[] = [];
    const rotation = createCoordinatorRotation(['a:1', 'b:2'], () => false);
    await expect(
      rotation.call(async (address) => {
        asked.push(address);
        throw new CapacityError('all agents are busy (coordinator a:1)', 250);
      }),
    ).rejects.toBeInstanceOf(CapacityError);
    await expect(
      rotation.call(async (address) => {
        asked.push(address);
        throw new TitanAbortError('coordinator call to a:1 was aborted');
      }),
    ).rejects.toBeInstanceOf(TitanAbortError);
    expect(asked).toEqual(['a:1', 'a:1']);
  });

  it('with every coordinator down: ClusterUnavailableError (a ConnectionError, UNAVAILABLE) naming each address and why', async () => {
    const rotation = createCoordinatorRotation(['a:1', 'b:2'], () => false);
    const error = (await rotation.call(async (address) => Promise.reject(refused(address))).catch((e: unknown) => e)) as ClusterUnavailableError;
    expect(error).toBeInstanceOf(ClusterUnavailableError);
    expect(error).toBeInstanceOf(ConnectionError);
    expect(error.code).toBe(Status.UNAVAILABLE);
    expect(error.message).toBe(
      'no coordinator answered (tried 2): a:1 (connection refused (nothing listens there), ECONNREFUSED); b:2 (connection refused (nothing listens there), ECONNREFUSED)',
    );
    expect(error.addresses).toEqual(['a:1', 'b:2']);
    expect(error.failures.map((f) => f.address)).toEqual(['a:1', 'b:2']);
    expect(error.context).toMatchObject({ target: 'coordinator', coordinatorsTried: ['a:1', 'b:2'] });
  });

  it('with one address, throws its own error as before', async () => {
    const rotation = createCoordinatorRotation(['a:1'], () => false);
    const error = await rotation.call(async (address) => Promise.reject(refused(address))).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ConnectionError);
    expect(error).not.toBeInstanceOf(ClusterUnavailableError);
    expect((error as Error).message).toBe('cannot reach coordinator at a:1: connection refused (nothing listens there), ECONNREFUSED');
  });

  it('a coordinator that said "no agent" wins over unreachable ones: NoAgentsError with their reasons', async () => {
    const rotation = createCoordinatorRotation(['a:1', 'b:2'], () => false);
    const error = (await rotation
      .call(async (address) =>
        Promise.reject(address === 'a:1' ? refused(address) : new NoAgentsError('no agent available for model "m" (coordinator b:2)', 'm')),
      )
      .catch((e: unknown) => e)) as NoAgentsError;
    expect(error).toBeInstanceOf(NoAgentsError);
    expect(error.model).toBe('m');
    expect(error.message).toBe(
      'no agent available for model "m" (coordinator b:2); other coordinators: a:1 (connection refused (nothing listens there), ECONNREFUSED)',
    );
  });
});

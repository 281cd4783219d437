import { ClusterUnavailableError, ConnectionError, InvalidArgumentError, NoAgentsError, TimeoutError, type TitanError, UnavailableError } from '../errors.js';

/** A `host:port` (an optional URL scheme, IPv6 in brackets). */
const HOST_PORT = /^(\[[0-9A-Fa-f:.]+\]|[^\s:[\]/,]+):\d{1,5}$/;

/**
 * The coordinator addresses of a client option: one `host:port`, several separated by commas
 * (`'a:50051,b:50051'`), or an array of them; spaces are ignored and duplicates dropped. Throws
 * {@link InvalidArgumentError} (field `coordinator`) naming the first entry that is not `host:port`.
 *
 * @example
 * ```ts
 * parseCoordinatorAddresses('c1:50051, c2:50051'); // ['c1:50051', 'c2:50051']
 * ```
 */
export function parseCoordinatorAddresses(value: string | readonly string[]): string[] {
  // Checked at run time too: JavaScript callers may pass anything.
  const input: unknown = value;
  const list: unknown[] =
    typeof input === 'string' ? input.split(',') : Array.isArray(input) ? input.flatMap((v: unknown) => (typeof v === 'string' ? v.split(',') : [v])) : [input];
  const entries: string[] = [];
  for (const raw of list) {
    const entry = typeof raw === 'string' ? raw.trim() : raw;
    if (entry === '') continue;
    if (typeof entry !== 'string' || !HOST_PORT.test(entry.replace(/^(https?|grpcs?):\/\//, ''))) {
      throw new InvalidArgumentError(`coordinator: expected host:port (or several, comma-separated), got ${JSON.stringify(entry)}`, 'coordinator');
    }
    if (!entries.includes(entry)) entries.push(entry);
  }
  if (entries.length === 0) throw new InvalidArgumentError(`coordinator: expected host:port, got ${JSON.stringify(value)}`, 'coordinator');
  return entries;
}

/** One coordinator that did not answer a call (or answered that it cannot serve it now). */
export interface CoordinatorFailure {
  address: string;
  error: TitanError;
}

/** The coordinators a client asks, in order, remembering which one answered last. */
export interface CoordinatorRotation {
  /** Every address, as configured. */
  readonly addresses: readonly string[];
  /** The address that answered last: the next call starts there (the first one until any answered). */
  readonly current: string;
  /**
   * Runs `run` on one coordinator after the other, starting with {@link CoordinatorRotation.current},
   * until one answers: each address at most once per call. It moves on when a coordinator cannot
   * be reached (`ConnectionError`), answers UNAVAILABLE (draining, no agent it can use:
   * `UnavailableError`, `NoAgentsError`) or its deadline passed before a connection was made
   * (`TimeoutError` with `connected(address)` false). Any other answer — success or error, e.g. a
   * busy one — ends the call and makes that address current. The caller's abort ends it at once
   * (`run` throws `TitanAbortError`, which is never retried). With one address its error is thrown
   * as it is; with several, {@link ClusterUnavailableError} naming each address and why, or, when
   * some coordinator said it has no agent, that `NoAgentsError` with the others' reasons added.
   */
  call<T>(run: (address: string) => Promise<T>, onFailover?: (failure: CoordinatorFailure, next: string) => void): Promise<T>;
}

/** Failures another coordinator of the same cluster may not have. */
function isCoordinatorFailover(error: TitanError, connected: boolean): boolean {
  if (error instanceof ConnectionError || error instanceof UnavailableError || error instanceof NoAgentsError) return true;
  return error instanceof TimeoutError && !connected;
}

/** `address (reason)`: the error's message without the address it already names. */
function describeFailure({ address, error }: CoordinatorFailure): string {
  const reason = error.message.replace(`cannot reach coordinator at ${address}: `, '').replace(` (coordinator ${address})`, '');
  return `${address} (${reason})`;
}

/**
 * Creates a {@link CoordinatorRotation} over `addresses` (see {@link parseCoordinatorAddresses}).
 * `connected(address)` says whether the client's channel to that coordinator is connected now
 * (a deadline on a connected channel is the server's slowness, not a dead address).
 */
export function createCoordinatorRotation(addresses: readonly string[], connected: (address: string) => boolean): CoordinatorRotation {
  let current = 0;
  return {
    addresses,
    get current() {
      return addresses[current] ?? addresses[0] ?? '';
    },
    async call(run, onFailover) {
      const failures: CoordinatorFailure[] = [];
      const start = current;
      for (let i = 0; i < addresses.length; i++) {
        const index = (start + i) % addresses.length;
        const address = addresses[index]!;
        try {
          const answer = await run(address);
          current = index;
          return answer;
        } catch (err) {
          const error = err as TitanError;
          if (!isCoordinatorFailover(error, connected(address))) {
            current = index;
            throw error;
          }
          failures.push({ address, error });
          const next = addresses[(index + 1) % addresses.length];
          if (i + 1 < addresses.length && next !== undefined) onFailover?.({ address, error }, next);
        }
      }
      const only = failures[0];
      if (addresses.length === 1 && only) throw only.error;
      const tried = failures.map(describeFailure).join('; ');
      const noAgents = failures.find((f) => f.error instanceof NoAgentsError);
      if (noAgents) {
        const error = noAgents.error as NoAgentsError;
        const others = failures.filter((f) => f !== noAgents);
        const message =
          others.length === 0
            ? `${error.message} (every coordinator said so: ${addresses.join(', ')})`
            : `${error.message}; other coordinators: ${others.map(describeFailure).join('; ')}`;
        throw new NoAgentsError(message, error.model, { cause: error, context: { ...error.context, coordinatorsTried: failures.map((f) => f.address) } });
      }
      throw new ClusterUnavailableError(`no coordinator answered (tried ${addresses.length}): ${tried}`, addresses, failures, {
        cause: failures.at(-1)?.error,
        context: { target: 'coordinator', coordinatorsTried: failures.map((f) => f.address) },
      });
    },
  };
}

import { createFileRegistry, fromBinary, ScalarType, type DescMessage, type FileRegistry } from '@bufbuild/protobuf';
import { reflect, type ReflectMessage } from '@bufbuild/protobuf/reflect';
import { FileDescriptorSetSchema } from '@bufbuild/protobuf/wkt';
import { ServerError, Status, type ServerMiddleware } from 'nice-grpc-common';

/**
 * What a guarded decoder hands to the handler chain instead of throwing: grpc-js answers a
 * throwing decoder with INTERNAL "Error deserializing request", which blames the server for
 * the caller's bad input. The request-decoding middleware turns it into INVALID_ARGUMENT.
 */
export class UndecodableRequest {
  constructor(
    /** Names the field and what was wrong with it, e.g. `gpus[0].memory_total_mb: …`. */
    readonly message: string,
  ) {}
}

/** A ts-proto generic service definition (what `pnpm generate` emits), as far as guarding needs it. */
interface TsProtoDefinition {
  readonly fullName: string;
  readonly methods: Readonly<Record<string, { readonly name: string; readonly requestType: { decode(input: Uint8Array): unknown } }>>;
}

function isTsProtoDefinition(d: object): d is TsProtoDefinition {
  const { fullName, methods } = d as Partial<TsProtoDefinition>;
  return (
    typeof fullName === 'string' &&
    typeof methods === 'object' &&
    methods !== null &&
    Object.values(methods).every((m) => typeof m?.requestType?.decode === 'function')
  );
}

const SIXTY_FOUR_BIT = new Set([ScalarType.INT64, ScalarType.UINT64, ScalarType.SINT64, ScalarType.FIXED64, ScalarType.SFIXED64]);
const MAX = BigInt(Number.MAX_SAFE_INTEGER);
const MIN = BigInt(Number.MIN_SAFE_INTEGER);
const unsafe = (v: unknown): v is bigint => typeof v === 'bigint' && (v > MAX || v < MIN);

/** Path (proto field names, `a.b[2].c`, `m["k"]`) and value of the first 64-bit integer JavaScript cannot hold exactly. */
function findUnsafeInteger(message: ReflectMessage, prefix: string): { path: string; value: bigint } | undefined {
  for (const field of message.fields) {
    if (!message.isSet(field)) continue;
    const path = prefix + field.name;
    switch (field.fieldKind) {
      case 'scalar': {
        const value = message.get(field);
        if (SIXTY_FOUR_BIT.has(field.scalar) && unsafe(value)) return { path, value };
        break;
      }
      case 'message': {
        const found = findUnsafeInteger(message.get(field), `${path}.`);
        if (found) return found;
        break;
      }
      case 'list': {
        let i = 0;
        for (const item of message.get(field)) {
          if (unsafe(item)) return { path: `${path}[${i}]`, value: item };
          if (field.listKind === 'message') {
            const found = findUnsafeInteger(item as ReflectMessage, `${path}[${i}].`);
            if (found) return found;
          }
          i += 1;
        }
        break;
      }
      case 'map': {
        for (const [key, item] of message.get(field)) {
          const at = `${path}[${JSON.stringify(String(key))}]`;
          if (unsafe(key)) return { path: `${path} key`, value: key };
          if (unsafe(item)) return { path: at, value: item };
          if (field.mapKind === 'message') {
            const found = findUnsafeInteger(item as ReflectMessage, `${at}.`);
            if (found) return found;
          }
        }
        break;
      }
      default:
        break;
    }
  }
  return undefined;
}

/** Explains why `bytes` of a `type` request could not be decoded, naming the field where it can. */
function explain(type: DescMessage | undefined, bytes: Uint8Array, err: unknown): string {
  const reason = err instanceof Error ? err.message : String(err);
  if (!type) return `request could not be decoded: ${reason}`;
  let decoded: ReturnType<typeof fromBinary>;
  try {
    decoded = fromBinary(type, bytes);
  } catch (strictErr) {
    return `request is not a valid ${type.typeName}: ${strictErr instanceof Error ? strictErr.message : String(strictErr)}`;
  }
  const found = findUnsafeInteger(reflect(type, decoded), '');
  if (found) {
    return (
      `${found.path}: ${found.value} is out of range; this server accepts 64-bit integers ` +
      `from ${Number.MIN_SAFE_INTEGER} to ${Number.MAX_SAFE_INTEGER} (±(2^53-1))`
    );
  }
  return `request is not a valid ${type.typeName}: ${reason}`;
}

/**
 * Guards the request decoders of ts-proto service definitions: a request whose bytes the
 * generated code cannot decode (chiefly an int64 above 2^53, which `forceLong=number` code
 * refuses) becomes an {@link UndecodableRequest} that names the field, instead of grpc-js's
 * INTERNAL "Error deserializing request".
 */
export interface RequestDecodingGuard {
  /** A copy of a ts-proto `definition` whose request decoders never throw (other definitions are returned as they are). */
  guard<D extends object>(definition: D): D;
  /** Answers calls that carry an {@link UndecodableRequest} with INVALID_ARGUMENT (streams: when the bad message is read). */
  readonly middleware: ServerMiddleware;
  /**
   * What the middleware hands on: the request of a unary or server-streaming call, checked now
   * (throws INVALID_ARGUMENT); a request stream wrapped so each message is checked when read.
   */
  checked<T>(requestStream: boolean, request: T): T;
}

/**
 * Creates the guard for a contract given as a serialized FileDescriptorSet (used to find the
 * field at fault; it is parsed only when a request fails to decode).
 *
 * @example
 * ```ts
 * const decoding = createRequestDecodingGuard(Buffer.from(DESCRIPTOR_SET_BASE64, 'base64'));
 * server.use(decoding.middleware).add(...);
 * nice.add(decoding.guard(CoordinatorServiceDefinition), impl);
 * ```
 */
export function createRequestDecodingGuard(descriptorSet: Uint8Array): RequestDecodingGuard {
  let registry: FileRegistry | undefined;
  const inputType = (service: string, method: string): DescMessage | undefined => {
    try {
      registry ??= createFileRegistry(fromBinary(FileDescriptorSetSchema, descriptorSet));
      return registry.getService(service)?.methods.find((m) => m.name === method)?.input;
    } catch {
      return undefined;
    }
  };
  const check = <T>(value: T): T => {
    if (value instanceof UndecodableRequest) throw new ServerError(Status.INVALID_ARGUMENT, value.message);
    return value;
  };
  /**
   * `requests` with each message checked as it is read. A plain async iterator, not an async
   * generator: a stream waits here for every message, and a generator layer would keep its own
   * request queue and promises alive across each wait.
   */
  const checkStream = <T>(requests: AsyncIterable<T>): AsyncIterable<T> => ({
    [Symbol.asyncIterator](): AsyncIterator<T> {
      const iterator = requests[Symbol.asyncIterator]();
      const checked = (result: IteratorResult<T>): IteratorResult<T> => {
        if (result.done) return result;
        try {
          check(result.value);
        } catch (err) {
          // The stream is refused: let the source go, as leaving a for-await loop would.
          void iterator.return?.()?.catch(() => undefined);
          throw err;
        }
        return result;
      };
      return {
        next: () => iterator.next().then(checked),
        return: (value?: unknown) => iterator.return?.(value) ?? Promise.resolve({ done: true as const, value: undefined }),
      };
    },
  });

  return {
    guard<D extends object>(given: D): D {
      if (!isTsProtoDefinition(given)) return given;
      const definition: TsProtoDefinition = given;
      const methods = Object.fromEntries(
        Object.entries(definition.methods).map(([key, method]) => {
          const decode = (bytes: Uint8Array): unknown => {
            try {
              return method.requestType.decode(bytes);
            } catch (err) {
              return new UndecodableRequest(explain(inputType(definition.fullName, method.name), bytes, err));
            }
          };
          return [key, { ...method, requestType: { ...method.requestType, decode } }];
        }),
      );
      return { ...given, methods } as D;
    },
    checked: <T>(requestStream: boolean, request: T): T => (requestStream ? (checkStream(request as AsyncIterable<unknown>) as T) : check(request)),
    middleware: async function* requestDecodingMiddleware(call, context) {
      if (call.method.requestStream) {
        return yield* call.next(checkStream(call.request as AsyncIterable<unknown>) as never, context);
      }
      return yield* call.next(check(call.request), context);
    },
  };
}

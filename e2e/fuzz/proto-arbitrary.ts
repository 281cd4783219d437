/**
 * Descriptor-driven fast-check arbitraries: any message of the TitanCompute contract, built from
 * the descriptor set the protocol package ships, with boundary values for every field type
 * (int64 beyond 2^53, NaN and ±Infinity, negative counts, 5,000-character and control-character
 * strings, unknown enum numbers). Used by the fuzz suite to hit every RPC with well-formed but
 * hostile messages, and with raw bytes.
 */
import {
  create,
  createFileRegistry,
  fromBinary,
  ScalarType,
  toBinary,
  type DescField,
  type DescMessage,
  type DescMethod,
  type DescService,
} from '@bufbuild/protobuf';
import { FileDescriptorSetSchema } from '@bufbuild/protobuf/wkt';
import fc from 'fast-check';
import { DESCRIPTOR_SET_BASE64 } from '@titancompute/protocol';

/** Every file of the contract, for looking up services and messages by name. */
export const contract = createFileRegistry(fromBinary(FileDescriptorSetSchema, Buffer.from(DESCRIPTOR_SET_BASE64, 'base64')));

/** A service of the contract by its full name, e.g. `titancompute.v1.CoordinatorService`. */
export function service(typeName: string): DescService {
  const desc = contract.getService(typeName);
  if (!desc) throw new Error(`service ${typeName} is not in the descriptor set`);
  return desc;
}

const hostileStrings = [
  '',
  ' ',
  'a'.repeat(5000),
  '\u0000',
  '\u202e\u0007\u001b[2J',
  '../../etc/passwd',
  '127.0.0.1:1',
  '[::1]:0',
  'host:99999',
  'x'.repeat(129),
  '-1',
  'NaN',
  '1e308',
  '{"a":1}',
  'llama-2-tiny-random',
  '😀'.repeat(100),
];

const int32Edges = [0, 1, -1, 2 ** 31 - 1, -(2 ** 31), 1_000_000, -1000];
const uint32Edges = [0, 1, 2 ** 32 - 1];
const int64Edges = [0n, 1n, -1n, 2n ** 53n + 1n, -(2n ** 53n) - 1n, 2n ** 63n - 1n, -(2n ** 63n)];
const uint64Edges = [0n, 1n, 2n ** 53n + 1n, 2n ** 64n - 1n];
const doubleEdges = [0, -0, -1, Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY, 1e308, -1e308, 5e-324, 0.7];
/** float32 edges: its largest and smallest magnitudes (a float field cannot carry 1e308). */
const floatEdges = [0, -0, -1, Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY, 3.4e38, -3.4e38, 1.4e-45, 0.7, 2.5];

function scalar(type: ScalarType): fc.Arbitrary<unknown> {
  switch (type) {
    case ScalarType.STRING:
      return fc.oneof(fc.constantFrom(...hostileStrings), fc.string({ maxLength: 40 }), fc.string({ unit: 'grapheme', maxLength: 20 }));
    case ScalarType.BOOL:
      return fc.boolean();
    case ScalarType.INT32:
    case ScalarType.SINT32:
    case ScalarType.SFIXED32:
      return fc.oneof(fc.constantFrom(...int32Edges), fc.integer());
    case ScalarType.UINT32:
    case ScalarType.FIXED32:
      return fc.oneof(fc.constantFrom(...uint32Edges), fc.integer({ min: 0, max: 2 ** 32 - 1 }));
    case ScalarType.INT64:
    case ScalarType.SINT64:
    case ScalarType.SFIXED64:
      return fc.oneof(fc.constantFrom(...int64Edges), fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n }), fc.bigInt({ min: -1000n, max: 10_000n }));
    case ScalarType.UINT64:
    case ScalarType.FIXED64:
      return fc.oneof(fc.constantFrom(...uint64Edges), fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }));
    case ScalarType.DOUBLE:
      return fc.oneof(fc.constantFrom(...doubleEdges), fc.double());
    case ScalarType.FLOAT:
      return fc.oneof(fc.constantFrom(...floatEdges), fc.float());
    case ScalarType.BYTES:
      return fc.uint8Array({ maxLength: 64 });
  }
}

function single(
  field: { scalar?: ScalarType | undefined; enum?: { values: ReadonlyArray<{ number: number }> } | undefined; message?: DescMessage | undefined },
  depth: number,
): fc.Arbitrary<unknown> {
  if (field.message) return depth > 0 ? messageInit(field.message, depth - 1) : fc.constant({});
  if (field.enum) return fc.oneof(fc.constantFrom(...field.enum.values.map((v) => v.number)), fc.integer({ min: -3, max: 1000 }));
  if (field.scalar !== undefined) return scalar(field.scalar);
  return fc.constant(undefined);
}

function fieldValue(field: DescField, depth: number): fc.Arbitrary<unknown> {
  switch (field.fieldKind) {
    case 'scalar':
      return scalar(field.scalar);
    case 'enum':
      return single({ enum: field.enum }, depth);
    case 'message':
      return single({ message: field.message }, depth);
    case 'list':
      return fc.array(
        single(
          {
            scalar: field.listKind === 'scalar' ? field.scalar : undefined,
            enum: field.listKind === 'enum' ? field.enum : undefined,
            message: field.listKind === 'message' ? field.message : undefined,
          },
          depth,
        ),
        { maxLength: 4 },
      );
    case 'map':
      return fc
        .array(
          fc.tuple(
            fc.oneof(fc.constantFrom(...hostileStrings), fc.string({ maxLength: 12 })),
            single(
              {
                scalar: field.mapKind === 'scalar' ? field.scalar : undefined,
                enum: field.mapKind === 'enum' ? field.enum : undefined,
                message: field.mapKind === 'message' ? field.message : undefined,
              },
              depth,
            ),
          ),
          { maxLength: 4 },
        )
        .map((entries) => Object.fromEntries(entries));
  }
}

/** An init object (as `create()` takes it) for `desc`: any subset of its fields with hostile values. */
export function messageInit(desc: DescMessage, depth = 2): fc.Arbitrary<Record<string, unknown>> {
  const shape: Record<string, fc.Arbitrary<unknown>> = {};
  for (const field of desc.fields) {
    if (field.oneof && field.oneof.kind === 'oneof' && !field.proto.proto3Optional) continue; // real oneofs are set below
    shape[field.localName] = fieldValue(field, depth);
  }
  const plain = fc.record(shape, { requiredKeys: [] });
  const oneofs = desc.oneofs.filter((o) => !o.fields.some((f) => f.proto.proto3Optional));
  if (oneofs.length === 0) return plain;
  return fc
    .tuple(
      plain,
      ...oneofs.map((o) =>
        fc.option(fc.constantFrom(...o.fields).chain((f) => fieldValue(f, depth).map((value) => [o.localName, { case: f.localName, value }] as const))),
      ),
    )
    .map(([base, ...chosen]) => {
      const out: Record<string, unknown> = { ...base };
      for (const c of chosen) if (c) out[c[0]] = c[1];
      return out;
    });
}

/**
 * Encoded requests for `desc`: hostile messages, hostile changes to a valid `base` (so the
 * fuzzer gets past the first check into the handler's later ones), and raw bytes.
 */
export function requestBytes(desc: DescMessage, base?: Record<string, unknown>): fc.Arbitrary<Uint8Array> {
  const encode = (init: Record<string, unknown>) => toBinary(desc, create(desc, init as never));
  const hostile = messageInit(desc).map(encode);
  const raw = fc.uint8Array({ maxLength: 200 });
  if (!base) return fc.oneof({ arbitrary: hostile, weight: 3 }, { arbitrary: raw, weight: 1 });
  const mutated = messageInit(desc).map((overrides) => {
    const keys = Object.keys(overrides);
    const keep = keys.slice(0, 1 + (keys.length % 3));
    return encode({ ...base, ...Object.fromEntries(keep.map((k) => [k, overrides[k]])) });
  });
  return fc.oneof(
    { arbitrary: mutated, weight: 3 },
    { arbitrary: hostile, weight: 2 },
    { arbitrary: raw, weight: 1 },
    { arbitrary: fc.constant(encode(base)), weight: 1 },
  );
}

/** The gRPC path of a method, e.g. `/titancompute.v1.CoordinatorService/RequestInference`. */
export function methodPath(method: DescMethod): string {
  return `/${method.parent.typeName}/${method.name}`;
}

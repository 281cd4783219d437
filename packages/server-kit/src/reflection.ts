import { create, toBinary } from '@bufbuild/protobuf';
import {
  FieldDescriptorProto_Label,
  FieldDescriptorProto_Type,
  FileDescriptorProtoSchema,
  FileDescriptorSetSchema,
  type FileDescriptorProto,
} from '@bufbuild/protobuf/wkt';

/**
 * `grpc/health/v1/health.proto` (the standard gRPC health checking protocol that
 * nice-grpc-server-health implements) as a FileDescriptorProto. Reflection clients such as
 * `buf curl` or grpcurl need it to call `grpc.health.v1.Health/Check`; the contract's own
 * descriptor set does not contain it.
 */
export const HEALTH_FILE_DESCRIPTOR: FileDescriptorProto = create(FileDescriptorProtoSchema, {
  name: 'grpc/health/v1/health.proto',
  package: 'grpc.health.v1',
  syntax: 'proto3',
  messageType: [
    {
      name: 'HealthCheckRequest',
      field: [{ name: 'service', jsonName: 'service', number: 1, label: FieldDescriptorProto_Label.OPTIONAL, type: FieldDescriptorProto_Type.STRING }],
    },
    {
      name: 'HealthCheckResponse',
      field: [
        {
          name: 'status',
          jsonName: 'status',
          number: 1,
          label: FieldDescriptorProto_Label.OPTIONAL,
          type: FieldDescriptorProto_Type.ENUM,
          typeName: '.grpc.health.v1.HealthCheckResponse.ServingStatus',
        },
      ],
      enumType: [
        {
          name: 'ServingStatus',
          value: [
            { name: 'UNKNOWN', number: 0 },
            { name: 'SERVING', number: 1 },
            { name: 'NOT_SERVING', number: 2 },
            { name: 'SERVICE_UNKNOWN', number: 3 },
          ],
        },
      ],
    },
  ],
  service: [
    {
      name: 'Health',
      method: [
        { name: 'Check', inputType: '.grpc.health.v1.HealthCheckRequest', outputType: '.grpc.health.v1.HealthCheckResponse' },
        {
          name: 'Watch',
          inputType: '.grpc.health.v1.HealthCheckRequest',
          outputType: '.grpc.health.v1.HealthCheckResponse',
          serverStreaming: true,
        },
      ],
    },
  ],
});

/**
 * The FileDescriptorSet server reflection serves: the contract's set (`DESCRIPTOR_SET_BASE64`
 * of `@titancompute/protocol`) plus {@link HEALTH_FILE_DESCRIPTOR}, so every service the server
 * lists can also be described. (A FileDescriptorSet is one repeated field, so two encoded sets
 * concatenate into one.)
 *
 * @example
 * ```ts
 * ServerReflection(createReflectionDescriptorSet(Buffer.from(DESCRIPTOR_SET_BASE64, 'base64')), names);
 * ```
 */
export function createReflectionDescriptorSet(contract: Uint8Array): Uint8Array {
  const health = toBinary(FileDescriptorSetSchema, create(FileDescriptorSetSchema, { file: [HEALTH_FILE_DESCRIPTOR] }));
  const out = new Uint8Array(contract.length + health.length);
  out.set(contract, 0);
  out.set(health, contract.length);
  return out;
}

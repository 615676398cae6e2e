import { Health } from "../gen/grpc/health/v1/health_pb.js";
import * as reflectionV1 from "../gen/grpc/reflection/v1/reflection_pb.js";
import * as reflectionV1alpha from "../gen/grpc/reflection/v1alpha/reflection_pb.js";

/**
 * Services that answer without credentials and while draining: load balancers and grpcurl
 * must be able to probe and explore a replica that has no business data to protect there.
 */
export const OPEN_SERVICES: readonly string[] = [
  Health.typeName,
  reflectionV1.ServerReflection.typeName,
  reflectionV1alpha.ServerReflection.typeName,
];

/**
 * gRPC server reflection (v1 and v1alpha) served from the protobuf-es descriptors the broker was
 * built with, so grpcurl and `buf curl` work with no proto files. Serving our own descriptors
 * (rather than `@grpc/reflection`) keeps maps, well-known types and nested messages correct:
 * every answer carries the requested file plus its transitive dependencies.
 */
import { create, toBinary, type DescFile, type DescMessage, type DescService } from "@bufbuild/protobuf";
import { FileDescriptorProtoSchema } from "@bufbuild/protobuf/wkt";
import type { ServiceImpl } from "@connectrpc/connect";
import * as v1 from "../gen/grpc/reflection/v1/reflection_pb.js";
import * as v1alpha from "../gen/grpc/reflection/v1alpha/reflection_pb.js";
import { decodedRequests } from "./request-refusal.js";
import { bindService, type ServiceBinding } from "./service-binding.js";

const NOT_FOUND = 5;

interface DescriptorIndex {
  readonly serviceNames: readonly string[];
  readonly fileBySymbol: ReadonlyMap<string, DescFile>;
  readonly fileByName: ReadonlyMap<string, DescFile>;
}

function indexMessages(messages: readonly DescMessage[], file: DescFile, into: Map<string, DescFile>): void {
  for (const message of messages) {
    into.set(message.typeName, file);
    for (const nested of message.nestedEnums) into.set(nested.typeName, file);
    for (const extension of message.nestedExtensions) into.set(extension.typeName, file);
    indexMessages(message.nestedMessages, file, into);
  }
}

function collectFiles(file: DescFile, into: Map<string, DescFile>): void {
  const name = `${file.name}.proto`;
  if (into.has(name)) return;
  into.set(name, file);
  for (const dependency of file.dependencies) collectFiles(dependency, into);
}

function buildIndex(services: readonly DescService[]): DescriptorIndex {
  const fileByName = new Map<string, DescFile>();
  for (const service of services) collectFiles(service.file, fileByName);
  const fileBySymbol = new Map<string, DescFile>();
  for (const file of fileByName.values()) {
    indexMessages(file.messages, file, fileBySymbol);
    for (const e of file.enums) fileBySymbol.set(e.typeName, file);
    for (const x of file.extensions) fileBySymbol.set(x.typeName, file);
    for (const s of file.services) {
      fileBySymbol.set(s.typeName, file);
      for (const m of s.methods) fileBySymbol.set(`${s.typeName}.${m.name}`, file);
    }
  }
  return { serviceNames: services.map((s) => s.typeName).sort(), fileBySymbol, fileByName };
}

/** The file and everything it imports, dependencies first, each serialized once. */
function withDependencies(file: DescFile): Uint8Array[] {
  const ordered = new Map<string, DescFile>();
  const visit = (f: DescFile) => {
    const name = `${f.name}.proto`;
    if (ordered.has(name)) return;
    for (const dependency of f.dependencies) visit(dependency);
    ordered.set(name, f);
  };
  visit(file);
  // The requested file first: some clients treat the first entry as the answer.
  const files = [file, ...[...ordered.values()].filter((f) => f !== file)];
  return files.map((f) => toBinary(FileDescriptorProtoSchema, f.proto));
}

type Api = typeof v1 | typeof v1alpha;
type Request = v1.ServerReflectionRequest | v1alpha.ServerReflectionRequest;

function answer(api: Api, index: DescriptorIndex, request: Request) {
  const original = { ...request } as never;
  const error = (message: string) => ({
    validHost: request.host,
    originalRequest: original,
    messageResponse: { case: "errorResponse" as const, value: { errorCode: NOT_FOUND, errorMessage: message } },
  });
  const files = (file: DescFile | undefined, what: string) =>
    file
      ? {
          validHost: request.host,
          originalRequest: original,
          messageResponse: {
            case: "fileDescriptorResponse" as const,
            value: { fileDescriptorProto: withDependencies(file) },
          },
        }
      : error(`${what} not found`);
  const req = request.messageRequest;
  switch (req.case) {
    case "listServices":
      return {
        validHost: request.host,
        originalRequest: original,
        messageResponse: {
          case: "listServicesResponse" as const,
          value: { service: index.serviceNames.map((name) => ({ name })) },
        },
      };
    case "fileByFilename":
      return files(index.fileByName.get(req.value), `file ${req.value}`);
    case "fileContainingSymbol":
      return files(index.fileBySymbol.get(req.value), `symbol ${req.value}`);
    case "fileContainingExtension":
      return error(`extension ${req.value.containingType}/${req.value.extensionNumber}`);
    case "allExtensionNumbersOfType":
      return index.fileBySymbol.has(req.value)
        ? {
            validHost: request.host,
            originalRequest: original,
            messageResponse: {
              case: "allExtensionNumbersResponse" as const,
              value: { baseTypeName: req.value, extensionNumber: [] },
            },
          }
        : error(`type ${req.value}`);
    default:
      void api;
      return error("empty reflection request");
  }
}

/** Reflection bindings (v1 and v1alpha) describing `services` (reflection itself included). */
export function createReflectionBindings(services: readonly DescService[]): ServiceBinding[] {
  const all = [...services, v1.ServerReflection, v1alpha.ServerReflection];
  const index = buildIndex(all);
  const v1Impl: ServiceImpl<typeof v1.ServerReflection> = {
    async *serverReflectionInfo(requests) {
      for await (const request of decodedRequests(requests, v1.ServerReflectionRequestSchema.typeName)) {
        yield create(v1.ServerReflectionResponseSchema, answer(v1, index, request));
      }
    },
  };
  const v1alphaImpl: ServiceImpl<typeof v1alpha.ServerReflection> = {
    async *serverReflectionInfo(requests) {
      for await (const request of decodedRequests(requests, v1alpha.ServerReflectionRequestSchema.typeName)) {
        yield create(v1alpha.ServerReflectionResponseSchema, answer(v1alpha, index, request) as never);
      }
    },
  };
  return [bindService(v1.ServerReflection, v1Impl), bindService(v1alpha.ServerReflection, v1alphaImpl)];
}

/**
 * An implementation of a service whose capability is not enabled in this build: every method
 * answers UNIMPLEMENTED with a message saying so, rather than pretending to work.
 */
import type { DescService } from "@bufbuild/protobuf";
import type { ServiceImpl } from "@connectrpc/connect";
import { BrokerError } from "../../domain/errors.js";

export function unimplementedService<S extends DescService>(service: S, why: string): ServiceImpl<S> {
  const impl: Record<string, () => never> = {};
  for (const method of service.methods) {
    impl[method.localName] = () => {
      throw new BrokerError("unimplemented", `${service.typeName}/${method.name} is not available: ${why}`);
    };
  }
  return impl as unknown as ServiceImpl<S>;
}

/**
 * The policy as the authentication interceptor applies it to a called method: the configured
 * service policies mapped to domain rules (`rpcs` patterns become operations), and a check by
 * full method name that answers `permission_denied` naming the method.
 */
import type { PolicyConfig } from "../config/policy-problems.js";
import type { ServicePolicy } from "../config/types.js";
import { BrokerError } from "../domain/errors.js";
import { createPolicy, type Policy, type ServiceRule } from "../domain/policy.js";
import type { Principal } from "../domain/types.js";
import { operationOfMethod, operationsMatching } from "./rpc-operations.js";

export interface RpcPolicy extends Policy {
  /** Throws `permission_denied` (reason RPC_NOT_ALLOWED) when the principal may not call the method. */
  authorizeRpc(principal: Principal, fullMethod: string): void;
}

export function serviceRuleOf(policy: ServicePolicy): ServiceRule {
  const { rpcs, ...rest } = policy;
  return { ...rest, operations: operationsMatching(rpcs) };
}

export function createRpcPolicy(config: PolicyConfig): RpcPolicy {
  const policy = createPolicy({ policies: config.policies.map(serviceRuleOf) });
  return {
    ...policy,
    authorizeRpc(principal, fullMethod) {
      const operation = operationOfMethod(fullMethod);
      // Admins are not limited by the catalogue; everyone else only to the broker's own RPCs.
      const allowed = operation === undefined ? principal.kind === "admin" : policy.mayPerform(principal, operation);
      if (allowed) return;
      throw new BrokerError("permission_denied", `${principal.subject} (${principal.kind}) may not call ${fullMethod}`, {
        reason: "RPC_NOT_ALLOWED",
        metadata: { method: fullMethod },
      });
    },
  };
}

/**
 * Policy mistakes to report at start-up (and on reload, before swapping): unknown providers,
 * RPC patterns that match nothing, scopes no listed provider allows, duplicate rules.
 */
import { allowedScopesOf } from "../domain/policy.js";
import type { ProviderScopes } from "../domain/provider-profile.js";
import { BROKER_RPCS, RPC, rpcMatches } from "../transport/rpc-operations.js";
import type { ServicePolicy } from "./types.js";

/** The policy section of the configuration, with the providers its rules name. */
export interface PolicyConfig {
  readonly policies: readonly ServicePolicy[];
  readonly providers: readonly ProviderScopes[];
}

export function policyProblems(config: PolicyConfig): string[] {
  const problems: string[] = [];
  const providers = new Map(config.providers.map((provider) => [provider.id, provider]));
  const seen = new Set<string>();
  config.policies.forEach((rule, index) => {
    const where = `policies[${index}] (${rule.service || "no service"})`;
    if (rule.service.trim() === "") problems.push(`${where}: service must name a service principal or "*"`);
    if (seen.has(rule.service)) problems.push(`${where}: a second rule for the same service`);
    seen.add(rule.service);
    for (const provider of rule.providers) {
      if (provider !== "*" && !providers.has(provider)) problems.push(`${where}: unknown provider ${provider}`);
    }
    for (const pattern of rule.rpcs) {
      if (!BROKER_RPCS.some((method) => rpcMatches(pattern, method))) {
        problems.push(`${where}: rpcs entry ${pattern} matches no RPC (use e.g. ${RPC.startAuthorization} or IntegrationService/*)`);
      }
    }
    const ruleProviders = rule.providers.includes("*")
      ? [...providers.values()]
      : rule.providers.flatMap((id) => providers.get(id) ?? []);
    const reachable = new Set(ruleProviders.flatMap((provider) => [...allowedScopesOf(provider)]));
    for (const scope of rule.scopes) {
      if (scope !== "*" && !reachable.has(scope)) {
        problems.push(`${where}: scope ${scope} is not allowed by any of its providers`);
      }
    }
  });
  return problems;
}

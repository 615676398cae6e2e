/**
 * The broker's RPCs by full method name (`<package>.<Service>/<Method>`), each mapped to the
 * domain operation it performs, and the policy `rpcs` patterns of the configuration that name
 * them. The one place wire method names meet the domain.
 */
import { OPERATIONS, operationClass, type Operation, type OperationClass } from "../domain/operations.js";

const PACKAGE = "oauthbroker.v1";

/** Every broker RPC by full method name, keyed by its operation. */
export const RPC: Readonly<Record<Operation, string>> = {
  getAccessToken: `${PACKAGE}.TokenService/GetAccessToken`,
  startAuthorization: `${PACKAGE}.AuthorizationService/StartAuthorization`,
  completeAuthorization: `${PACKAGE}.AuthorizationService/CompleteAuthorization`,
  listIntegrations: `${PACKAGE}.IntegrationService/ListIntegrations`,
  getIntegration: `${PACKAGE}.IntegrationService/GetIntegration`,
  refreshIntegration: `${PACKAGE}.IntegrationService/RefreshIntegration`,
  syncIntegrations: `${PACKAGE}.IntegrationService/SyncIntegrations`,
  deleteIntegration: `${PACKAGE}.IntegrationService/DeleteIntegration`,
  watchIntegrations: `${PACKAGE}.IntegrationService/WatchIntegrations`,
  listProviders: `${PACKAGE}.ProviderService/ListProviders`,
  getStatus: `${PACKAGE}.StatusService/GetStatus`,
  listAuditEvents: `${PACKAGE}.AuditService/ListAuditEvents`,
};

export const BROKER_RPCS: readonly string[] = OPERATIONS.map((operation) => RPC[operation]);

const OPERATION_BY_METHOD: ReadonlyMap<string, Operation> = new Map(OPERATIONS.map((operation) => [RPC[operation], operation]));

/** The operation a full method name performs; `undefined` for a method outside the broker's services. */
export function operationOfMethod(fullMethod: string): Operation | undefined {
  return OPERATION_BY_METHOD.get(fullMethod);
}

/** Looked up on every call, so resolved once per method rather than through its operation. */
const CLASS_BY_METHOD: ReadonlyMap<string, OperationClass> = new Map(
  OPERATIONS.map((operation) => [RPC[operation], operationClass(operation)]),
);

/** The rate-limit class of a full method name; unknown methods count as reads. */
export function rpcClass(fullMethod: string): OperationClass {
  return CLASS_BY_METHOD.get(fullMethod) ?? "read";
}

/**
 * Matches a policy `rpcs` entry: a full method name, `<Service>/*`, either with or without the
 * `oauthbroker.v1.` package, or "*" for every broker RPC.
 */
export function rpcMatches(pattern: string, fullMethod: string): boolean {
  if (pattern === "*") return BROKER_RPCS.includes(fullMethod);
  const qualified = pattern.startsWith(`${PACKAGE}.`) ? pattern : `${PACKAGE}.${pattern}`;
  if (qualified.endsWith("/*")) return fullMethod.startsWith(qualified.slice(0, -1));
  return qualified === fullMethod;
}

/** The operations a rule's `rpcs` patterns name. */
export function operationsMatching(patterns: readonly string[]): Operation[] {
  return OPERATIONS.filter((operation) => patterns.some((pattern) => rpcMatches(pattern, RPC[operation])));
}

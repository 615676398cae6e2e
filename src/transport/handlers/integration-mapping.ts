/** Domain ⇄ proto mapping for integrations, shared by every handler that returns one. */
import { create } from "@bufbuild/protobuf";
import { timestampFromDate, type Timestamp } from "@bufbuild/protobuf/wkt";
import type { Integration, IntegrationStatus as DomainStatus } from "../../domain/types.js";
import {
  IntegrationSchema,
  IntegrationStatus,
  type Integration as ProtoIntegration,
} from "../../gen/oauthbroker/v1/integration_pb.js";

const TO_PROTO: Record<DomainStatus, IntegrationStatus> = {
  active: IntegrationStatus.ACTIVE,
  needs_reauth: IntegrationStatus.NEEDS_REAUTH,
  deleted: IntegrationStatus.DELETED,
};

export function toProtoStatus(status: DomainStatus): IntegrationStatus {
  return TO_PROTO[status];
}

/** UNSPECIFIED maps to undefined ("no filter"). */
export function fromProtoStatus(status: IntegrationStatus): DomainStatus | undefined {
  switch (status) {
    case IntegrationStatus.ACTIVE:
      return "active";
    case IntegrationStatus.NEEDS_REAUTH:
      return "needs_reauth";
    case IntegrationStatus.DELETED:
      return "deleted";
    default:
      return undefined;
  }
}

function timestamp(date: Date | null): Timestamp | undefined {
  return date ? timestampFromDate(date) : undefined;
}

export function toProtoIntegration(integration: Integration): ProtoIntegration {
  return create(IntegrationSchema, {
    id: integration.id,
    userId: integration.userId,
    provider: integration.provider,
    externalAccountId: integration.externalAccount.id,
    externalAccountName: integration.externalAccount.name,
    externalAccountAttributes: { ...integration.externalAccount.attributes },
    grantedScopes: [...integration.grantedScopes],
    status: toProtoStatus(integration.status),
    statusReason: integration.statusReason,
    createTime: timestamp(integration.createdAt),
    updateTime: timestamp(integration.updatedAt),
    lastRefreshTime: timestamp(integration.lastRefreshedAt),
    lastUsedTime: timestamp(integration.lastUsedAt),
    accessTokenExpireTime: timestamp(integration.accessTokenExpiresAt),
    refreshFailureCount: integration.refreshFailureCount,
    hasRefreshToken: integration.hasRefreshToken,
  });
}

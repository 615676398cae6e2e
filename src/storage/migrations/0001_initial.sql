-- Foundation schema. Forward-only: later changes come as new numbered files.

create table integrations (
  id                          uuid primary key,
  user_id                     text not null,
  provider                    text not null,
  external_account_id         text not null,
  external_account_name       text not null default '',
  external_account_attributes jsonb not null default '{}'::jsonb,
  granted_scopes              text[] not null default '{}',
  status                      text not null default 'active'
                              check (status in ('active', 'needs_reauth', 'deleted')),
  status_reason               text not null default '',
  refresh_failure_count       integer not null default 0,
  created_at                  timestamptz not null default now(),
  updated_at                  timestamptz not null default now(),
  last_refreshed_at           timestamptz,
  last_used_at                timestamptz,
  deleted_at                  timestamptz,
  -- When the proactive refresher may try again after a failure (backoff).
  next_refresh_attempt_at     timestamptz
);

-- One live integration per user x provider x external account; tombstones do not count.
create unique index integrations_account_uq
  on integrations (user_id, provider, external_account_id) where status <> 'deleted';
-- ListIntegrations: newest first, keyset pagination on (created_at, id).
create index integrations_user_created_idx on integrations (user_id, created_at desc, id desc);
create index integrations_created_idx on integrations (created_at desc, id desc);
create index integrations_provider_status_idx on integrations (provider, status);
create index integrations_deleted_at_idx on integrations (deleted_at) where status = 'deleted';

-- The secret half of an integration. Every secret column holds a Cipher ciphertext bound to the
-- integration id; deleting the row erases the grant.
create table token_sets (
  integration_id            uuid primary key references integrations (id) on delete cascade,
  access_token_ciphertext   text not null,
  refresh_token_ciphertext  text,
  token_type                text not null default 'Bearer',
  scopes                    text[] not null default '{}',
  expires_at                timestamptz not null,
  -- Incremented by every token write: writes are conditional on the version read.
  version                   bigint not null default 1,
  -- Refresh lease: one replica at a time calls the provider for this grant.
  lease_owner               text,
  lease_expires_at          timestamptz,
  updated_at                timestamptz not null default now()
);

-- Proactive refresh picks tokens by expiry.
create index token_sets_expires_idx on token_sets (expires_at);

create table authorization_sessions (
  id                        uuid primary key,
  -- SHA-256 of the state parameter: the state itself is never stored.
  state_hash                text not null unique,
  user_id                   text not null,
  provider                  text not null,
  requested_scopes          text[] not null default '{}',
  return_to                 text not null default '',
  code_verifier_ciphertext  text,
  nonce                     text,
  created_at                timestamptz not null default now(),
  expires_at                timestamptz not null
);

create index authorization_sessions_expires_idx on authorization_sessions (expires_at);

-- Append-only, hash-chained audit trail.
create table audit_events (
  sequence        bigint primary key,
  time            timestamptz not null default now(),
  action          text not null,
  outcome         text not null check (outcome in ('success', 'failure', 'denied')),
  reason          text not null default '',
  caller          text not null default '',
  caller_kind     text not null default '',
  user_id         text not null default '',
  integration_id  text not null default '',
  provider        text not null default '',
  request_id      text not null default '',
  peer            text not null default '',
  scopes          text[] not null default '{}',
  details         jsonb not null default '{}'::jsonb,
  previous_hash   text not null,
  hash            text not null
);

create index audit_events_time_idx on audit_events (time);
create index audit_events_user_idx on audit_events (user_id, sequence);
create index audit_events_integration_idx on audit_events (integration_id, sequence);

-- The last hash removed by retention, so verification of what remains still anchors.
create table audit_anchor (
  id              boolean primary key default true check (id),
  sequence        bigint not null,
  hash            text not null
);

-- Change feed for WatchIntegrations: the id is the resume cursor.
create table integration_events (
  id              bigserial primary key,
  integration_id  uuid not null,
  user_id         text not null,
  provider        text not null,
  type            text not null,
  time            timestamptz not null default now()
);

create index integration_events_time_idx on integration_events (time);

-- The change feed, pending revocations and sync claims.

-- Every change a watcher cares about is recorded by the database itself, in the transaction that
-- makes it: no writer can forget, and an event exists exactly when its change committed.
-- Writers that know better than the row diff (a reconnect that changes nothing visible) name the
-- change with `set_config('oauth_broker.change', '<type>', true)`.
create function oauth_broker_integration_event() returns trigger language plpgsql as $$
declare
  change text := nullif(current_setting('oauth_broker.change', true), '');
  event_id bigint;
begin
  if tg_op = 'INSERT' then
    change := 'created';
  elsif new.status is distinct from old.status then
    change := case new.status when 'deleted' then 'deleted' when 'needs_reauth' then 'needs_reauth' else 'reauthorized' end;
  elsif new.status = 'deleted' then
    return null;
  -- Providers list scopes in any order: only a different set is a change.
  elsif array(select distinct unnest(new.granted_scopes) order by 1)
        is distinct from array(select distinct unnest(old.granted_scopes) order by 1) then
    change := 'scopes_changed';
  elsif change is not null then
    null;
  elsif new.last_refreshed_at is distinct from old.last_refreshed_at then
    change := 'refreshed';
  elsif new.refresh_failure_count > old.refresh_failure_count then
    change := 'refresh_failed';
  else
    return null;
  end if;
  -- Ids are handed out in commit order (the lock is held until commit), so a reader that has
  -- seen id N has seen every committed event before N: resuming from a cursor never skips one.
  perform pg_advisory_xact_lock(8025811934071060017);
  insert into integration_events (integration_id, user_id, provider, type)
  values (new.id, new.user_id, new.provider, change)
  returning id into event_id;
  perform pg_notify('oauth_broker_integration_events', event_id::text);
  return null;
end
$$;

create trigger integrations_change_feed
  after insert or update on integrations
  for each row execute function oauth_broker_integration_event();

create index integration_events_user_idx on integration_events (user_id, id);

-- Events up to this id were removed by retention: a cursor older than that cannot resume.
create table integration_events_horizon (
  id              boolean primary key default true check (id),
  purged_through  bigint not null
);

-- A deleted integration whose grant the provider has not confirmed revoked yet (503, timeout).
-- The one token kept for it stays encrypted, bound to the integration id, until the revocation
-- succeeds or is given up.
create table pending_revocations (
  integration_id    uuid primary key references integrations (id) on delete cascade,
  provider          text not null,
  token_ciphertext  text not null,
  token_type_hint   text not null check (token_type_hint in ('access_token', 'refresh_token')),
  attempts          integer not null default 0,
  last_error        text not null default '',
  created_at        timestamptz not null default now(),
  next_attempt_at   timestamptz not null default now()
);

create index pending_revocations_due_idx on pending_revocations (next_attempt_at);

-- SyncIntegrations on several replicas at once: a replica claims an integration before checking it.
alter table integrations
  add column synced_at timestamptz,
  add column sync_claimed_until timestamptz;

-- What a refresh lease holder has done at the provider: set just before a refresh request is
-- sent, with the token-set version whose refresh token it carries and the holder that sent it.
-- A replica taking over a lapsed lease that still carries this mark knows the stored refresh
-- token may already be spent at a rotating provider (its holder died before storing the answer).
-- Cleared by the write of a refreshed set and by a holder that learned the outcome.
alter table token_sets
  add column refresh_sent_version bigint,
  add column refresh_sent_by      text,
  add column refresh_sent_at      timestamptz;

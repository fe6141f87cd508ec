-- Migration 8: bookkeeping for cron.
--
-- One row per crontab entry identifier that a worker has seen: when it was first seen (no
-- backfilling before that) and when it last ran (so that many workers schedule each tick
-- once). Same table as Node graphile-worker's migration 000008.

create table {schema}.known_crontabs (
  identifier text not null primary key,
  known_since timestamptz not null,
  last_execution timestamptz
);
alter table {schema}.known_crontabs enable row level security;

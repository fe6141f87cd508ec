--! breaking-change
-- Migration 11: normalise job storage around integer ids.
--
-- Until now every job row carried its task identifier and queue name as text, and queue
-- rows were kept alive by counting triggers. From here on task identifiers and queue
-- names live in lookup tables (tasks, job_queues) and jobs point at them by integer id;
-- small counters become smallint, and jobs and queues get a stored "is_available" column
-- that the partial fetch indexes are built on. Jobs are now added through add_jobs() (a
-- batch of job_spec values); add_job() is a batch of one, except in 'unsafe_dedupe' mode.
--
-- Procedure: take the old tables out of the way under temporary names, create the new
-- tables and functions, copy every job across (jobs get new ids, in the order of their old
-- ids), then drop the old tables together with their triggers.
--
-- A job held by a running worker cannot be copied safely: that worker would later
-- complete or fail a row that no longer exists. So the migration refuses to run while any
-- job was locked within the last four hours (older locks are treated as abandoned, and the
-- copy releases them). The refusal uses SQLSTATE 22012 (division_by_zero), the condition
-- Node graphile-worker's version of this migration raises, so that both libraries'
-- migrators recognise it.

-- Nobody may add, take or finish a job while the data moves.
lock table {schema}.jobs, {schema}.job_queues in access exclusive mode;

do $$
begin
  if exists (
    select 1
    from {schema}.jobs as held
    where held.locked_at > now() - interval '4 hours'
  ) then
    raise exception using
      errcode = 'division_by_zero',
      message = 'graphile-worker migration 11 cannot run while jobs are locked: '
        || 'a worker locked at least one job within the last 4 hours',
      hint = 'Stop all workers cleanly (so that they release their jobs and queues) '
        || 'before migrating, then run the migration again.';
  end if;
end
$$;

-- These functions return or read the old row type; their replacements follow below.
-- (Fetching, completing and failing single jobs moves into the worker's own queries.)
drop function {schema}.get_job(text, text[], interval, text[], timestamptz);
drop function {schema}.complete_job(text, bigint);
drop function {schema}.fail_job(text, bigint, text);
drop function {schema}.add_job(text, json, text, timestamptz, integer, text, integer, text[], text);
drop function {schema}.complete_jobs(bigint[]);
drop function {schema}.permanently_fail_jobs(bigint[], text);
drop function {schema}.remove_job(text);
drop function {schema}.reschedule_jobs(bigint[], timestamptz, integer, integer, integer);

alter table {schema}.jobs rename to legacy_jobs;
alter table {schema}.job_queues rename to legacy_job_queues;

-- The old tables still hold the names jobs_pkey, jobs_key_key, jobs_id_seq and
-- job_queues_pkey while the new tables are created, which is why the new ones end in "1".
-- They are spelled out so that the names never depend on what else is in the schema.

create table {schema}.job_queues (
  id int generated always as identity (sequence name {schema}.job_queues_id_seq),
  queue_name text not null,
  locked_at timestamptz,
  locked_by text,
  is_available boolean not null generated always as (locked_at is null) stored,
  constraint job_queues_pkey1 primary key (id),
  constraint job_queues_queue_name_key unique (queue_name),
  constraint job_queues_queue_name_check check (length(queue_name) <= 128)
);
alter table {schema}.job_queues enable row level security;

create table {schema}.tasks (
  id int generated always as identity (sequence name {schema}.tasks_id_seq),
  identifier text not null,
  constraint tasks_pkey primary key (id),
  constraint tasks_identifier_key unique (identifier),
  constraint tasks_identifier_check check (length(identifier) <= 128)
);
alter table {schema}.tasks enable row level security;

-- job_queue_id and task_id deliberately have no foreign keys: every insert would pay for
-- the check, and rows in the lookup tables are never deleted.
create table {schema}.jobs (
  id bigint generated always as identity (sequence name {schema}.jobs_id_seq1),
  job_queue_id int,
  task_id int not null,
  payload json not null default '{}'::json,
  priority smallint not null default 0,
  run_at timestamptz not null default now(),
  attempts smallint not null default 0,
  max_attempts smallint not null default 25,
  last_error text,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  key text,
  locked_at timestamptz,
  locked_by text,
  revision int not null default 0,
  flags jsonb,
  is_available boolean not null
    generated always as (locked_at is null and attempts < max_attempts) stored,
  constraint jobs_pkey1 primary key (id),
  constraint jobs_key_key1 unique (key),
  constraint jobs_key_check check (length(key) > 0 and length(key) <= 512),
  constraint jobs_max_attempts_check check (max_attempts >= 1)
);
alter table {schema}.jobs enable row level security;

-- One job as add_jobs() takes it; null fields get the same defaults add_job() applies.
create type {schema}.job_spec as (
  identifier text,
  payload json,
  queue_name text,
  run_at timestamptz,
  max_attempts integer,
  job_key text,
  priority integer,
  flags text[]
);

create function {schema}.add_jobs(
  specs {schema}.job_spec[],
  job_key_preserve_run_at boolean default false
) returns setof {schema}.jobs
language plpgsql
as $$
begin
  -- Every task identifier and queue name in the batch needs a lookup row.
  insert into {schema}.tasks (identifier)
  select distinct spec.identifier
  from unnest(specs) as spec
  on conflict do nothing;

  insert into {schema}.job_queues (queue_name)
  select distinct spec.queue_name
  from unnest(specs) as spec
  where spec.queue_name is not null
  on conflict do nothing;

  -- A job holding one of the batch's keys that is running, or has no attempts left,
  -- must not be rewritten in place: its worker acts on the old data. Release the key
  -- (so that the spec becomes a new job) and make sure the old row is never retried.
  update {schema}.jobs as superseded
  set key = null,
      attempts = superseded.max_attempts,
      updated_at = now()
  where superseded.key in (select spec.job_key from unnest(specs) as spec)
    and not superseded.is_available;

  -- Insert in batch order, so ids and returned rows follow the order of the specs.
  -- A spec whose key names a waiting job replaces that job's contents instead.
  return query
  insert into {schema}.jobs as jobs (
    job_queue_id, task_id, payload, run_at, max_attempts, key, priority, flags
  )
  select
    queues.id,
    tasks.id,
    coalesce(spec.payload, '{}'::json),
    coalesce(spec.run_at, now()),
    coalesce(spec.max_attempts, 25),
    spec.job_key,
    coalesce(spec.priority, 0),
    (select jsonb_object_agg(flag.name, true) from unnest(spec.flags) as flag (name))
  from unnest(specs) with ordinality as spec (
    identifier, payload, queue_name, run_at, max_attempts, job_key, priority, flags, position
  )
  join {schema}.tasks as tasks on tasks.identifier = spec.identifier
  left join {schema}.job_queues as queues on queues.queue_name = spec.queue_name
  order by spec.position
  on conflict (key) do update set
    job_queue_id = excluded.job_queue_id,
    task_id = excluded.task_id,
    payload = excluded.payload,
    max_attempts = excluded.max_attempts,
    run_at = case
      when job_key_preserve_run_at and jobs.attempts = 0 then jobs.run_at
      else excluded.run_at
    end,
    priority = excluded.priority,
    flags = excluded.flags,
    revision = jobs.revision + 1,
    -- A replaced job starts afresh.
    attempts = 0,
    last_error = null,
    updated_at = now()
  where jobs.locked_at is null
  returning *;
end;
$$;

-- Jobs still locked by a live worker (locked less than four hours ago) are left alone by
-- the three functions below: that worker will report the outcome itself.

create function {schema}.complete_jobs(job_ids bigint[])
returns setof {schema}.jobs
language sql
as $$
  delete from {schema}.jobs as done
  where done.id = any (complete_jobs.job_ids)
    and (done.locked_at is null or done.locked_at < now() - interval '4 hours')
  returning *;
$$;

create function {schema}.permanently_fail_jobs(
  job_ids bigint[],
  error_message text default null::text
) returns setof {schema}.jobs
language sql
as $$
  update {schema}.jobs as failed
  set last_error = coalesce(permanently_fail_jobs.error_message, 'Manually marked as failed'),
      attempts = failed.max_attempts,
      updated_at = now()
  where failed.id = any (permanently_fail_jobs.job_ids)
    and (failed.locked_at is null or failed.locked_at < now() - interval '4 hours')
  returning *;
$$;

create function {schema}.remove_job(job_key text)
returns {schema}.jobs
language plpgsql
strict
as $$
declare
  v_job {schema}.jobs;
begin
  -- A job nobody is running (or whose lock expired) is simply deleted.
  delete from {schema}.jobs as doomed
  where doomed.key = remove_job.job_key
    and (doomed.locked_at is null or doomed.locked_at < now() - interval '4 hours')
  returning * into v_job;
  if found then
    return v_job;
  end if;

  -- A running job cannot be taken from its worker; instead it gives up its key and will
  -- not be retried. Without any such job the result is a row of nulls.
  update {schema}.jobs as running
  set key = null,
      attempts = running.max_attempts,
      updated_at = now()
  where running.key = remove_job.job_key
  returning * into v_job;
  return v_job;
end;
$$;

create function {schema}.reschedule_jobs(
  job_ids bigint[],
  run_at timestamp with time zone default null::timestamp with time zone,
  priority integer default null::integer,
  attempts integer default null::integer,
  max_attempts integer default null::integer
) returns setof {schema}.jobs
language sql
as $$
  -- A null argument keeps the job's current value.
  update {schema}.jobs as moved
  set run_at = coalesce(reschedule_jobs.run_at, moved.run_at),
      priority = coalesce(reschedule_jobs.priority, moved.priority),
      attempts = coalesce(reschedule_jobs.attempts, moved.attempts),
      max_attempts = coalesce(reschedule_jobs.max_attempts, moved.max_attempts),
      updated_at = now()
  where moved.id = any (reschedule_jobs.job_ids)
    and (moved.locked_at is null or moved.locked_at < now() - interval '4 hours')
  returning *;
$$;

-- One wake-up call per inserting statement, however many rows it inserted.
create function {schema}.tg_jobs__after_insert()
returns trigger
language plpgsql
as $$
begin
  perform pg_notify('jobs:insert', '');
  return null;
end;
$$;

create trigger _900_after_insert
after insert on {schema}.jobs
for each statement
execute procedure {schema}.tg_jobs__after_insert();

create function {schema}.add_job(
  identifier text,
  payload json default null::json,
  queue_name text default null::text,
  run_at timestamp with time zone default null::timestamp with time zone,
  max_attempts integer default null::integer,
  job_key text default null::text,
  priority integer default null::integer,
  flags text[] default null::text[],
  job_key_mode text default 'replace'::text
) returns {schema}.jobs
language plpgsql
as $$
declare
  v_job {schema}.jobs;
begin
  -- Without a key, or with the 'replace' (default) or 'preserve_run_at' key modes, a
  -- single job is a batch of one.
  if add_job.job_key is null
    or coalesce(add_job.job_key_mode, 'replace') in ('replace', 'preserve_run_at')
  then
    select * into v_job
    from {schema}.add_jobs(
      array[row(
        add_job.identifier,
        add_job.payload,
        add_job.queue_name,
        add_job.run_at,
        add_job.max_attempts,
        add_job.job_key,
        add_job.priority,
        add_job.flags
      )::{schema}.job_spec],
      add_job.job_key_mode = 'preserve_run_at'
    )
    limit 1;
    return v_job;
  end if;

  if add_job.job_key_mode <> 'unsafe_dedupe' then
    raise exception using
      errcode = 'GWBKM',
      message = 'invalid job_key_mode ' || quote_literal(add_job.job_key_mode)
        || '; expected ''replace'', ''preserve_run_at'' or ''unsafe_dedupe''';
  end if;

  -- 'unsafe_dedupe': when a job with this key exists, whatever its state (even running,
  -- so acting on out-of-date information), keep it untouched apart from bumping its
  -- revision and updated_at, and return it. Only for rare de-duplication needs.
  insert into {schema}.tasks (identifier)
  values (add_job.identifier)
  on conflict do nothing;

  if add_job.queue_name is not null then
    insert into {schema}.job_queues (queue_name)
    values (add_job.queue_name)
    on conflict do nothing;
  end if;

  insert into {schema}.jobs as jobs (
    job_queue_id, task_id, payload, run_at, max_attempts, key, priority, flags
  )
  values (
    (select queues.id from {schema}.job_queues as queues
      where queues.queue_name = add_job.queue_name),
    (select tasks.id from {schema}.tasks as tasks
      where tasks.identifier = add_job.identifier),
    coalesce(add_job.payload, '{}'::json),
    coalesce(add_job.run_at, now()),
    coalesce(add_job.max_attempts, 25),
    add_job.job_key,
    coalesce(add_job.priority, 0),
    (select jsonb_object_agg(flag.name, true) from unnest(add_job.flags) as flag (name))
  )
  on conflict (key) do update set
    revision = jobs.revision + 1,
    updated_at = now()
  returning * into v_job;
  return v_job;
end;
$$;

-- Copy the waiting jobs. Only names that some job uses get a lookup row.
insert into {schema}.job_queues (queue_name)
select distinct legacy.queue_name
from {schema}.legacy_jobs as legacy
where legacy.queue_name is not null
order by legacy.queue_name;

insert into {schema}.tasks (identifier)
select distinct legacy.task_identifier
from {schema}.legacy_jobs as legacy
order by legacy.task_identifier;

-- Locks (necessarily older than four hours here) are not carried over.
insert into {schema}.jobs (
  job_queue_id, task_id, payload, priority, run_at, attempts, max_attempts, last_error,
  created_at, updated_at, key, revision, flags
)
select
  queues.id,
  tasks.id,
  legacy.payload,
  legacy.priority,
  legacy.run_at,
  legacy.attempts,
  legacy.max_attempts,
  legacy.last_error,
  legacy.created_at,
  legacy.updated_at,
  legacy.key,
  legacy.revision,
  legacy.flags
from {schema}.legacy_jobs as legacy
join {schema}.tasks as tasks on tasks.identifier = legacy.task_identifier
left join {schema}.job_queues as queues on queues.queue_name = legacy.queue_name
order by legacy.id;

-- The fetch indexes are built once the data is in, which is cheaper than maintaining
-- them row by row during the copy.
create index jobs_main_index
  on {schema}.jobs using btree (priority, run_at)
  include (id, task_id, job_queue_id)
  where is_available = true;

create index jobs_no_queue_index
  on {schema}.jobs using btree (priority, run_at)
  include (id, task_id)
  where is_available = true and job_queue_id is null;

-- Dropping the old tables also drops their triggers; the notification trigger's function
-- is then unused. (The queue-counting and timestamp trigger functions are removed by
-- migration 15.)
drop table {schema}.legacy_jobs, {schema}.legacy_job_queues;
drop function {schema}.tg_jobs__notify_new_jobs();

-- Migration 2: job keys, and the lock recorded on the job itself.
--
-- Node graphile-worker's migration 000002 defines the objects; the bodies are our own.

-- A job key names a job so that it can be replaced or removed later; empty keys are refused.
alter table {schema}.jobs
  add column key text
    constraint jobs_key_key unique
    constraint jobs_key_check check (length(key) > 0);

-- Until now only the queue row knew who was running what; jobs now carry the lock too.
alter table {schema}.jobs add column locked_at timestamptz;
alter table {schema}.jobs add column locked_by text;

-- Carry the locks of running queues over to their jobs, so that jobs in flight during the
-- upgrade still count as locked.
update {schema}.jobs as j
   set locked_at = q.locked_at,
       locked_by = q.locked_by
  from {schema}.job_queues as q
 where q.queue_name = j.queue_name
   and q.locked_at is not null;


-- add_job gains `job_key`; the old five-argument version goes away.
drop function if exists {schema}.add_job(text, json, text, timestamptz, int);

-- Enqueue a job. With a `job_key`, a waiting job holding that key is overwritten instead
-- (keeping its queue unless a new one is given, and starting its attempts afresh). A job
-- holding the key that is already running cannot be changed: it loses the key and any
-- further retries, and a new job takes the key.
create function {schema}.add_job(
  identifier text,
  payload json default '{}',
  queue_name text default null,
  run_at timestamptz default now(),
  max_attempts int default 25,
  job_key text default null
) returns {schema}.jobs
language plpgsql
volatile
as $body$
declare
  added {schema}.jobs;
begin
  -- A null key never conflicts, so without a key the first pass is a plain insert. With a
  -- key held by a running job the upsert leaves that job alone and returns nothing; we then
  -- detach it and go round once more, which inserts afresh.
  loop
    insert into {schema}.jobs as j
      (task_identifier, payload, queue_name, run_at, max_attempts, key)
    values
      (identifier, payload, queue_name, run_at, max_attempts, job_key)
    on conflict (key) do update
      set task_identifier = excluded.task_identifier,
          payload = excluded.payload,
          queue_name = coalesce(excluded.queue_name, j.queue_name),
          max_attempts = excluded.max_attempts,
          run_at = excluded.run_at,
          attempts = 0,
          last_error = null
      where j.locked_at is null
    returning j.* into added;

    exit when found;

    update {schema}.jobs as j
       set key = null,
           attempts = j.max_attempts
     where j.key = job_key;
  end loop;

  return added;
end;
$body$;


-- Remove a job by key, unless a worker is running it.
create function {schema}.remove_job(job_key text) returns {schema}.jobs
language sql
strict
volatile
as $body$
  delete from {schema}.jobs as j
   where j.key = $1
     and j.locked_at is null
  returning j.*;
$body$;


-- get_job (see migration 1), now also stamping the lock on the job row.
create or replace function {schema}.get_job(
  worker_id text,
  task_identifiers text[] default null,
  job_expiry interval default interval '4 hours'
) returns {schema}.jobs
language plpgsql
volatile
as $body$
declare
  claimed {schema}.jobs;
  claimed_at constant timestamptz := now();
begin
  if worker_id is null or length(worker_id) < 10 then
    raise exception 'invalid worker id';
  end if;

  with candidate as materialized (
    select j.id, q.queue_name
      from {schema}.jobs as j
      join {schema}.job_queues as q on q.queue_name = j.queue_name
     where (q.locked_at is null or q.locked_at < claimed_at - job_expiry)
       and j.run_at <= claimed_at
       and j.attempts < j.max_attempts
       and (task_identifiers is null or j.task_identifier = any(task_identifiers))
     order by j.priority, j.run_at, j.id
     limit 1
     for update of q skip locked
  ), queue_claim as (
    update {schema}.job_queues as q
       set locked_by = worker_id,
           locked_at = claimed_at
      from candidate
     where q.queue_name = candidate.queue_name
  )
  update {schema}.jobs as j
     set attempts = j.attempts + 1,
         locked_by = worker_id,
         locked_at = claimed_at
    from candidate
   where j.id = candidate.id
  returning j.* into claimed;

  return claimed;
end;
$body$;


-- fail_job (see migration 1), now only for the worker holding the job, and releasing it.
create or replace function {schema}.fail_job(worker_id text, job_id bigint, error_message text)
returns {schema}.jobs
language plpgsql
volatile
strict
as $body$
declare
  failed {schema}.jobs;
begin
  with retried as (
    update {schema}.jobs as j
       set last_error = error_message,
           run_at = greatest(j.run_at, now())
             + format('%s seconds', exp(least(j.attempts, 10)))::interval,
           locked_by = null,
           locked_at = null
     where j.id = job_id
       and j.locked_by = worker_id
    returning j.*
  ), released as (
    update {schema}.job_queues as q
       set locked_by = null,
           locked_at = null
      from retried
     where q.queue_name = retried.queue_name
       and q.locked_by = worker_id
  )
  select retried.* into failed from retried;

  return failed;
end;
$body$;

--! breaking-change
-- Migration 1: the original job queue.
--
-- Objects and signatures follow Node graphile-worker's migration 000001 exactly (same names,
-- argument names, defaults, flags); the function bodies are this library's own. The schema
-- and its `migrations` ledger already exist when this runs (the migrator creates them).

-- One row per named queue that currently holds jobs. A queue is claimed as a whole by the
-- worker running one of its jobs, which is what makes named queues run serially.
create table {schema}.job_queues (
  queue_name text not null primary key,
  job_count int not null,
  locked_at timestamptz,
  locked_by text
);
alter table {schema}.job_queues enable row level security;

create table {schema}.jobs (
  id bigserial primary key,
  queue_name text not null,
  task_identifier text not null,
  payload json default '{}'::json not null,
  priority int default 0 not null,
  run_at timestamptz default now() not null,
  attempts int default 0 not null,
  max_attempts int default 25 not null,
  last_error text,
  created_at timestamp with time zone not null default now(),
  updated_at timestamp with time zone not null default now()
);
alter table {schema}.jobs enable row level security;

-- The order in which get_job hands out work.
create index jobs_priority_run_at_id_idx on {schema}.jobs (priority, run_at, id);


-- updated_at must move forward on every change, even when one transaction touches a row
-- twice (now() is frozen for the whole transaction), so bump it by at least a millisecond.
create function {schema}.tg__update_timestamp() returns trigger
language plpgsql
as $body$
begin
  if old.updated_at + interval '1 millisecond' > now() then
    new.updated_at := old.updated_at + interval '1 millisecond';
  else
    new.updated_at := now();
  end if;
  return new;
end;
$body$;

create trigger _100_timestamps
  before update on {schema}.jobs
  for each row execute procedure {schema}.tg__update_timestamp();


-- job_queues.job_count follows the jobs table: a queue row appears with its first job and
-- disappears with its last one.
create function {schema}.jobs__decrease_job_queue_count() returns trigger
language plpgsql
as $body$
declare
  remaining int;
begin
  update {schema}.job_queues as q
     set job_count = q.job_count - 1
   where q.queue_name = old.queue_name
  returning q.job_count into remaining;

  -- `remaining` stays null when the queue had no row at all; then there is nothing to drop.
  if remaining < 1 then
    delete from {schema}.job_queues as q
     where q.queue_name = old.queue_name
       and q.job_count < 1;
  end if;

  return old;
end;
$body$;

create function {schema}.jobs__increase_job_queue_count() returns trigger
language plpgsql
as $body$
begin
  -- A new queue starts at one job; an existing one counts one more.
  insert into {schema}.job_queues as q (queue_name, job_count)
  values (new.queue_name, 1)
  on conflict (queue_name) do update
    set job_count = q.job_count + excluded.job_count;

  return new;
end;
$body$;

create trigger _500_increase_job_queue_count
  after insert on {schema}.jobs
  for each row execute procedure {schema}.jobs__increase_job_queue_count();
create trigger _500_decrease_job_queue_count
  after delete on {schema}.jobs
  for each row execute procedure {schema}.jobs__decrease_job_queue_count();
-- Moving a job to another queue counts as leaving the old queue and joining the new one.
create trigger _500_increase_job_queue_count_update
  after update of queue_name on {schema}.jobs
  for each row execute procedure {schema}.jobs__increase_job_queue_count();
create trigger _500_decrease_job_queue_count_update
  after update of queue_name on {schema}.jobs
  for each row execute procedure {schema}.jobs__decrease_job_queue_count();


-- Idle workers LISTEN on "jobs:insert"; one notification per inserting statement is enough
-- (PostgreSQL folds identical notifications of one transaction into one anyway).
create function {schema}.tg_jobs__notify_new_jobs() returns trigger
language plpgsql
as $body$
begin
  notify "jobs:insert";
  return null;
end;
$body$;

create trigger _900_notify_worker
  after insert on {schema}.jobs
  for each statement execute procedure {schema}.tg_jobs__notify_new_jobs();


-- Enqueue one job. Every argument is stored as given.
create function {schema}.add_job(
  identifier text,
  payload json default '{}',
  queue_name text default null,
  run_at timestamptz default now(),
  max_attempts int default 25
) returns {schema}.jobs
language sql
as $body$
  insert into {schema}.jobs (task_identifier, payload, queue_name, run_at, max_attempts)
  values ($1, $2, $3, $4, $5)
  returning *;
$body$;


-- Claim the next runnable job for `worker_id`: the most urgent job that is due, has attempts
-- left, matches `task_identifiers` (null: any task) and whose queue is free (or held by a
-- worker that has not been heard of for `job_expiry`). The queue is locked to the worker and
-- the attempt is counted. Returns null when there is nothing to do.
create function {schema}.get_job(
  worker_id text,
  task_identifiers text[] default null,
  job_expiry interval default interval '4 hours'
) returns {schema}.jobs
language plpgsql
as $body$
declare
  claimed {schema}.jobs;
begin
  if worker_id is null or length(worker_id) < 10 then
    raise exception 'invalid worker id';
  end if;

  with candidate as materialized (
    select j.id, q.queue_name
      from {schema}.jobs as j
      join {schema}.job_queues as q on q.queue_name = j.queue_name
     where (q.locked_at is null or q.locked_at < now() - job_expiry)
       and j.run_at <= now()
       and j.attempts < j.max_attempts
       and (task_identifiers is null or j.task_identifier = any(task_identifiers))
     order by j.priority, j.run_at, j.id
     limit 1
     -- Other workers skip a queue we are claiming instead of waiting for us.
     for update of q skip locked
  ), queue_claim as (
    update {schema}.job_queues as q
       set locked_by = worker_id,
           locked_at = now()
      from candidate
     where q.queue_name = candidate.queue_name
  )
  update {schema}.jobs as j
     set attempts = j.attempts + 1
    from candidate
   where j.id = candidate.id
  returning j.* into claimed;

  return claimed;
end;
$body$;


-- The job succeeded: delete it and hand its queue back.
create function {schema}.complete_job(worker_id text, job_id bigint) returns {schema}.jobs
language plpgsql
as $body$
declare
  finished {schema}.jobs;
begin
  with removed as (
    delete from {schema}.jobs as j
     where j.id = job_id
    returning j.*
  ), released as (
    update {schema}.job_queues as q
       set locked_by = null,
           locked_at = null
      from removed
     where q.queue_name = removed.queue_name
       and q.locked_by = worker_id
  )
  select removed.* into finished from removed;

  return finished;
end;
$body$;


-- The job failed: record the error, push run_at back exponentially (e^attempts seconds,
-- at most e^10, about six hours) and hand its queue back.
create function {schema}.fail_job(worker_id text, job_id bigint, error_message text)
returns {schema}.jobs
language plpgsql
as $body$
declare
  failed {schema}.jobs;
begin
  with retried as (
    update {schema}.jobs as j
       set last_error = error_message,
           -- Parsed from the number's text form, as Node does: same rounding, and the same
           -- error for the odd negative attempt count whose delay prints in exponent form.
           run_at = greatest(j.run_at, now())
             + format('%s seconds', exp(least(j.attempts, 10)))::interval
     where j.id = job_id
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

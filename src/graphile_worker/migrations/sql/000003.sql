--! breaking-change
-- Migration 3: jobs without a queue.
--
-- A job whose queue_name is null belongs to no named queue and may run in parallel with any
-- other job. Older workers would mishandle such jobs, hence the breaking mark. Node
-- graphile-worker's migration 000003 defines the objects; the bodies are our own.

alter table {schema}.jobs alter column queue_name drop not null;


-- add_job (see migration 2). Replacing a keyed job now also replaces its queue, so a null
-- queue_name moves it out of any queue.
create or replace function {schema}.add_job(
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
  -- First pass: insert, or overwrite a waiting job holding the key. Nothing comes back only
  -- when the key belongs to a running job; that job then gives up the key (and its
  -- remaining attempts) and the second pass inserts afresh.
  loop
    insert into {schema}.jobs as j
      (task_identifier, payload, queue_name, run_at, max_attempts, key)
    values
      (identifier, payload, queue_name, run_at, max_attempts, job_key)
    on conflict (key) do update
      set task_identifier = excluded.task_identifier,
          payload = excluded.payload,
          queue_name = excluded.queue_name,
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


-- get_job (see migration 2). The job row is now what gets locked; a job in a named queue
-- additionally needs that queue to be free, and the queue is claimed with it.
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
    select j.id, j.queue_name
      from {schema}.jobs as j
     where (j.locked_at is null or j.locked_at < claimed_at - job_expiry)
       and j.run_at <= claimed_at
       and j.attempts < j.max_attempts
       and (task_identifiers is null or j.task_identifier = any(task_identifiers))
       and (
         j.queue_name is null
         or exists (
           select 1
             from {schema}.job_queues as q
            where q.queue_name = j.queue_name
              and (q.locked_at is null or q.locked_at < claimed_at - job_expiry)
              for update skip locked
         )
       )
     order by j.priority, j.run_at, j.id
     limit 1
     for update of j skip locked
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


-- fail_job and complete_job (see migrations 1 and 2): a job without a queue has no queue to
-- hand back; joining on its null queue_name matches no queue row, which is exactly that.
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

create or replace function {schema}.complete_job(worker_id text, job_id bigint)
returns {schema}.jobs
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


-- The queue counters only concern jobs that have a queue; moving a job between queues (or
-- into or out of one) adjusts the queues it actually left and joined.
drop trigger _500_increase_job_queue_count on {schema}.jobs;
drop trigger _500_decrease_job_queue_count on {schema}.jobs;
drop trigger _500_increase_job_queue_count_update on {schema}.jobs;
drop trigger _500_decrease_job_queue_count_update on {schema}.jobs;

create trigger _500_increase_job_queue_count
  after insert on {schema}.jobs
  for each row
  when (NEW.queue_name is not null)
  execute procedure {schema}.jobs__increase_job_queue_count();
create trigger _500_decrease_job_queue_count
  after delete on {schema}.jobs
  for each row
  when (OLD.queue_name is not null)
  execute procedure {schema}.jobs__decrease_job_queue_count();
create trigger _500_increase_job_queue_count_update
  after update of queue_name on {schema}.jobs
  for each row
  when (NEW.queue_name is distinct from OLD.queue_name and NEW.queue_name is not null)
  execute procedure {schema}.jobs__increase_job_queue_count();
create trigger _500_decrease_job_queue_count_update
  after update of queue_name on {schema}.jobs
  for each row
  when (NEW.queue_name is distinct from OLD.queue_name and OLD.queue_name is not null)
  execute procedure {schema}.jobs__decrease_job_queue_count();

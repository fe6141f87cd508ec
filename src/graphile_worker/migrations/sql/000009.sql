-- Migration 9: get_job takes the current time as an argument.
--
-- A caller can pass its own notion of "now" (tests use this to travel in time); by default
-- it is the transaction's now(). Node graphile-worker's migration 000009 defines the
-- signature; the body is our own.

drop function {schema}.get_job(text, text[], interval, text[]);

-- get_job (see migration 5), measuring due times and lock expiry against `now`.
create function {schema}.get_job(
  worker_id text,
  task_identifiers text[] default null,
  job_expiry interval default interval '4 hours',
  forbidden_flags text[] default null,
  now timestamptz default now()
) returns {schema}.jobs
language plpgsql
volatile
as $body$
declare
  claimed {schema}.jobs;
begin
  if worker_id is null or length(worker_id) < 10 then
    raise exception 'invalid worker id';
  end if;

  with candidate as materialized (
    select j.id, j.queue_name
      from {schema}.jobs as j
     where (j.locked_at is null or j.locked_at < get_job.now - job_expiry)
       and j.run_at <= get_job.now
       and j.attempts < j.max_attempts
       and (task_identifiers is null or j.task_identifier = any(task_identifiers))
       and not coalesce(j.flags ?| forbidden_flags, false)
       and (
         j.queue_name is null
         or exists (
           select 1
             from {schema}.job_queues as q
            where q.queue_name = j.queue_name
              and (q.locked_at is null or q.locked_at < get_job.now - job_expiry)
              for update skip locked
         )
       )
     order by j.priority, j.run_at, j.id
     limit 1
     for update of j skip locked
  ), queue_claim as (
    update {schema}.job_queues as q
       set locked_by = worker_id,
           locked_at = get_job.now
      from candidate
     where q.queue_name = candidate.queue_name
  )
  update {schema}.jobs as j
     set attempts = j.attempts + 1,
         locked_by = worker_id,
         locked_at = get_job.now
    from candidate
   where j.id = candidate.id
  returning j.* into claimed;

  return claimed;
end;
$body$;

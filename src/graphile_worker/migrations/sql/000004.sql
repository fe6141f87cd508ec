-- Migration 4: job priority in add_job, input checks, and bulk admin functions.
--
-- Node graphile-worker's migration 000004 defines the objects; the bodies are our own.

drop function {schema}.add_job(text, json, text, timestamptz, int, text);

-- add_job (see migration 3) with `priority`. Every optional argument now defaults to null
-- and null means "the usual value" (payload {}, now, 25 attempts, priority 0), so callers
-- can pass nulls positionally. Oversized names and nonsensical attempt counts are refused
-- with graphile-worker's own SQLSTATEs (GWB..), which clients recognise.
create function {schema}.add_job(
  identifier text,
  payload json default null,
  queue_name text default null,
  run_at timestamptz default null,
  max_attempts int default null,
  job_key text default null,
  priority int default null
) returns {schema}.jobs
language plpgsql
volatile
as $body$
declare
  added {schema}.jobs;
begin
  -- length(null) is null, so absent values pass every check.
  if length(identifier) > 128 then
    raise exception using errcode = 'GWBID',
      message = 'Task identifier is too long (max length: 128).';
  elsif length(queue_name) > 128 then
    raise exception using errcode = 'GWBQN',
      message = 'Job queue name is too long (max length: 128).';
  elsif length(job_key) > 512 then
    raise exception using errcode = 'GWBJK',
      message = 'Job key is too long (max length: 512).';
  elsif max_attempts < 1 then
    raise exception using errcode = 'GWBMA',
      message = 'Job maximum attempts must be at least 1';
  end if;

  -- See migration 2 for why this loops at most twice.
  loop
    insert into {schema}.jobs as j
      (task_identifier, payload, queue_name, run_at, max_attempts, key, priority)
    values (
      identifier,
      coalesce(payload, '{}'::json),
      queue_name,
      coalesce(run_at, now()),
      coalesce(max_attempts, 25),
      job_key,
      coalesce(priority, 0)
    )
    on conflict (key) do update
      set task_identifier = excluded.task_identifier,
          payload = excluded.payload,
          queue_name = excluded.queue_name,
          max_attempts = excluded.max_attempts,
          run_at = excluded.run_at,
          priority = excluded.priority,
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


-- Bulk operations for administrators. Each acts only on jobs no live worker holds: unlocked
-- ones, or ones whose lock is older than four hours (the worker is presumed dead). They
-- return the jobs they changed.

-- Mark jobs as done by deleting them.
create function {schema}.complete_jobs(job_ids bigint[]) returns setof {schema}.jobs
language sql
volatile
as $body$
  delete from {schema}.jobs as j
   where j.id = any($1)
     and (j.locked_by is null or j.locked_at < now() - interval '4 hours')
  returning j.*;
$body$;

-- Give up on jobs: keep them for inspection but spend all their attempts.
create function {schema}.permanently_fail_jobs(
  job_ids bigint[],
  error_message text default null
) returns setof {schema}.jobs
language sql
volatile
as $body$
  update {schema}.jobs as j
     set last_error = coalesce($2, 'Manually marked as failed'),
         attempts = j.max_attempts
   where j.id = any($1)
     and (j.locked_by is null or j.locked_at < now() - interval '4 hours')
  returning j.*;
$body$;

-- Change when and how jobs run; a null argument leaves that property as it is.
create function {schema}.reschedule_jobs(
  job_ids bigint[],
  run_at timestamptz default null,
  priority int default null,
  attempts int default null,
  max_attempts int default null
) returns setof {schema}.jobs
language sql
volatile
as $body$
  update {schema}.jobs as j
     set run_at = coalesce($2, j.run_at),
         priority = coalesce($3, j.priority),
         attempts = coalesce($4, j.attempts),
         max_attempts = coalesce($5, j.max_attempts)
   where j.id = any($1)
     and (j.locked_by is null or j.locked_at < now() - interval '4 hours')
  returning j.*;
$body$;

-- Migration 7: job key modes, and remove_job for running jobs.
--
-- Node graphile-worker's migration 000007 defines the objects; the bodies are our own.

drop function {schema}.add_job(text, json, text, timestamptz, int, text, int, text[]);

-- add_job (see migration 5) with `job_key_mode`, which says what a job key does when a job
-- already holds it:
--   'replace' (or null)   overwrite the waiting job; if it is running, detach it from the
--                         key, stop its retries and add a new job (the behaviour so far);
--   'preserve_run_at'     the same, except that a waiting job that has never been attempted
--                         keeps its run_at (debouncing that does not postpone forever);
--   'unsafe_dedupe'       keep the existing job untouched, even a running one, only bumping
--                         its revision, and return it. Events arriving while that job runs
--                         are then lost, hence "unsafe".
-- Without a job key the mode is ignored.
create function {schema}.add_job(
  identifier text,
  payload json default null,
  queue_name text default null,
  run_at timestamptz default null,
  max_attempts integer default null,
  job_key text default null,
  priority integer default null,
  flags text[] default null,
  job_key_mode text default 'replace'
) returns {schema}.jobs
language plpgsql
volatile
as $body$
declare
  added {schema}.jobs;
begin
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
      message = 'Job maximum attempts must be at least 1.';
  end if;

  if job_key is not null and job_key_mode = 'unsafe_dedupe' then
    insert into {schema}.jobs as j
      (task_identifier, payload, queue_name, run_at, max_attempts, key, priority, flags)
    values (
      identifier,
      coalesce(payload, '{}'::json),
      queue_name,
      coalesce(run_at, now()),
      coalesce(max_attempts, 25),
      job_key,
      coalesce(priority, 0),
      (select jsonb_object_agg(f.flag, true) from unnest(add_job.flags) as f (flag))
    )
    -- The no-op update makes the existing row come back from RETURNING.
    on conflict (key) do update
      set revision = j.revision + 1
    returning j.* into added;

    return added;
  elsif job_key is not null and job_key_mode not in ('replace', 'preserve_run_at') then
    raise exception using errcode = 'GWBKM',
      message = 'Invalid job_key_mode value, expected ''replace'', ''preserve_run_at'' or '
        || '''unsafe_dedupe''.';
  end if;

  -- 'replace' and 'preserve_run_at'; see migration 2 for why this loops at most twice.
  loop
    insert into {schema}.jobs as j
      (task_identifier, payload, queue_name, run_at, max_attempts, key, priority, flags)
    values (
      identifier,
      coalesce(payload, '{}'::json),
      queue_name,
      coalesce(run_at, now()),
      coalesce(max_attempts, 25),
      job_key,
      coalesce(priority, 0),
      (select jsonb_object_agg(f.flag, true) from unnest(add_job.flags) as f (flag))
    )
    on conflict (key) do update
      set task_identifier = excluded.task_identifier,
          payload = excluded.payload,
          queue_name = excluded.queue_name,
          max_attempts = excluded.max_attempts,
          run_at = case
            when job_key_mode = 'preserve_run_at' and j.attempts = 0 then j.run_at
            else excluded.run_at
          end,
          priority = excluded.priority,
          flags = excluded.flags,
          revision = j.revision + 1,
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


-- remove_job (see migration 2). A job that is running cannot be deleted under the worker's
-- feet; instead it loses its key (so a new job may take it) and will not be retried.
create or replace function {schema}.remove_job(job_key text) returns {schema}.jobs
language plpgsql
strict
as $body$
declare
  removed {schema}.jobs;
begin
  delete from {schema}.jobs as j
   where j.key = job_key
     and j.locked_at is null
  returning j.* into removed;

  if not found then
    update {schema}.jobs as j
       set attempts = j.max_attempts,
           key = null
     where j.key = job_key
    returning j.* into removed;
  end if;

  return removed;
end;
$body$;

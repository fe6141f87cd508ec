-- Migration 5: job flags and revisions.
--
-- `flags` is a jsonb object whose keys are the job's flags (each mapped to true); a worker
-- can refuse jobs carrying given flags. `revision` counts how often a keyed job was replaced.
-- Node graphile-worker's migration 000005 defines the objects; the bodies are our own.

alter table {schema}.jobs add column revision int default 0 not null;
alter table {schema}.jobs add column flags jsonb default null;


drop function {schema}.add_job(text, json, text, timestamptz, int, text, int);

-- add_job (see migration 4) with `flags`.
create function {schema}.add_job(
  identifier text,
  payload json default null,
  queue_name text default null,
  run_at timestamptz default null,
  max_attempts int default null,
  job_key text default null,
  priority int default null,
  flags text[] default null
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
      message = 'Job maximum attempts must be at least 1';
  end if;

  -- See migration 2 for why this loops at most twice.
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
      -- {a, b} becomes {"a": true, "b": true}; no flags (null or empty) stays null.
      (select jsonb_object_agg(f.flag, true) from unnest(add_job.flags) as f (flag))
    )
    on conflict (key) do update
      set task_identifier = excluded.task_identifier,
          payload = excluded.payload,
          queue_name = excluded.queue_name,
          max_attempts = excluded.max_attempts,
          run_at = excluded.run_at,
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


drop function {schema}.get_job(text, text[], interval);

-- get_job (see migration 3); jobs carrying any of `forbidden_flags` are passed over.
create function {schema}.get_job(
  worker_id text,
  task_identifiers text[] default null,
  job_expiry interval default interval '4 hours',
  forbidden_flags text[] default null
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
       -- A job without flags, or a worker without a ban list, always passes.
       and not coalesce(j.flags ?| forbidden_flags, false)
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

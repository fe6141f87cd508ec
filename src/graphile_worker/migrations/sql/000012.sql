-- Migration 12: array payloads accumulate under a job key.
--
-- Batch jobs take an array payload and process its items together. When a spec with a
-- job key replaces a waiting job and both the waiting job's payload and the new payload
-- are JSON arrays, the new items are now appended to the old ones instead of replacing
-- them, so that events queued under one key are handled in one run. Any other
-- combination still replaces the payload. Nothing else about add_jobs() changes.

create or replace function {schema}.add_jobs(
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
    -- Array onto array: concatenate (through jsonb, as json has no operator for it).
    payload = case
      when json_typeof(jobs.payload) = 'array' and json_typeof(excluded.payload) = 'array'
        then (jobs.payload::jsonb || excluded.payload::jsonb)::json
      else excluded.payload
    end,
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

--! breaking-change
-- Migration 13: smallint for priority and max_attempts in the public interfaces.
--
-- The jobs table stores these two values (and attempts) as smallint since migration 11.
-- This migration makes job_spec, add_job() and reschedule_jobs() take smallint as well.
-- Changing a function's argument types changes its identity, so add_job() and
-- reschedule_jobs() are dropped and created again; callers passing integers break, which
-- is why the migration is marked breaking. (Migration 14 reverts the public side.)

alter type {schema}.job_spec alter attribute max_attempts type smallint;
alter type {schema}.job_spec alter attribute priority type smallint;

drop function {schema}.add_job(text, json, text, timestamptz, integer, text, integer, text[], text);
create function {schema}.add_job(
  identifier text,
  payload json default null::json,
  queue_name text default null::text,
  run_at timestamp with time zone default null::timestamp with time zone,
  max_attempts smallint default null::smallint,
  job_key text default null::text,
  priority smallint default null::smallint,
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

drop function {schema}.reschedule_jobs(bigint[], timestamptz, integer, integer, integer);
create function {schema}.reschedule_jobs(
  job_ids bigint[],
  run_at timestamp with time zone default null::timestamp with time zone,
  priority smallint default null::smallint,
  attempts smallint default null::smallint,
  max_attempts smallint default null::smallint
) returns setof {schema}.jobs
language sql
as $$
  -- A null argument keeps the job's current value; jobs a live worker holds (locked
  -- less than four hours ago) are left alone.
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

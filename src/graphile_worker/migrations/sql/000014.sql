--! breaking-change
-- Migration 14: integer arguments again for add_job() and reschedule_jobs().
--
-- With migration 13's smallint arguments, a call passing an integer, such as
-- add_job('t', priority => 5), no longer finds the function. The public functions go back
-- to integer arguments and convert to smallint themselves; storage and job_spec stay
-- smallint. Values outside the smallint range fail with SQLSTATE 22003. The argument
-- types change again, so the two functions are dropped and created again (breaking).

drop function {schema}.add_job(text, json, text, timestamptz, smallint, text, smallint, text[], text);
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
        add_job.max_attempts::smallint,
        add_job.job_key,
        add_job.priority::smallint,
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
    coalesce(add_job.max_attempts::smallint, 25::smallint),
    add_job.job_key,
    coalesce(add_job.priority::smallint, 0::smallint),
    (select jsonb_object_agg(flag.name, true) from unnest(add_job.flags) as flag (name))
  )
  on conflict (key) do update set
    revision = jobs.revision + 1,
    updated_at = now()
  returning * into v_job;
  return v_job;
end;
$$;

drop function {schema}.reschedule_jobs(bigint[], timestamptz, smallint, smallint, smallint);
create function {schema}.reschedule_jobs(
  job_ids bigint[],
  run_at timestamp with time zone default null::timestamp with time zone,
  priority integer default null::integer,
  attempts integer default null::integer,
  max_attempts integer default null::integer
) returns setof {schema}.jobs
language sql
as $$
  -- A null argument keeps the job's current value; jobs a live worker holds (locked
  -- less than four hours ago) are left alone.
  update {schema}.jobs as moved
  set run_at = coalesce(reschedule_jobs.run_at, moved.run_at),
      priority = coalesce(reschedule_jobs.priority::smallint, moved.priority),
      attempts = coalesce(reschedule_jobs.attempts::smallint, moved.attempts),
      max_attempts = coalesce(reschedule_jobs.max_attempts::smallint, moved.max_attempts),
      updated_at = now()
  where moved.id = any (reschedule_jobs.job_ids)
    and (moved.locked_at is null or moved.locked_at < now() - interval '4 hours')
  returning *;
$$;

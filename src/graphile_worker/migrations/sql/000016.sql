--! breaking-change
-- Migration 16: the tables become private.
--
-- The tables are implementation details that change between versions; applications
-- should go through the functions (and, from migration 17, the read-only "jobs" view).
-- They are renamed with a "_private_" prefix, which keeps their data, constraints,
-- indexes, sequences and trigger. Every function whose body names a table is created
-- again against the new names (dropped first, so they come back with default
-- privileges, as in Node graphile-worker). Code using the old table names breaks.

alter table {schema}.jobs rename to _private_jobs;
alter table {schema}.job_queues rename to _private_job_queues;
alter table {schema}.tasks rename to _private_tasks;
alter table {schema}.known_crontabs rename to _private_known_crontabs;

drop function {schema}.add_job(text, json, text, timestamptz, integer, text, integer, text[], text);
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
) returns {schema}._private_jobs
language plpgsql
as $$
declare
  v_job {schema}._private_jobs;
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
  insert into {schema}._private_tasks (identifier)
  values (add_job.identifier)
  on conflict do nothing;

  if add_job.queue_name is not null then
    insert into {schema}._private_job_queues (queue_name)
    values (add_job.queue_name)
    on conflict do nothing;
  end if;

  insert into {schema}._private_jobs as jobs (
    job_queue_id, task_id, payload, run_at, max_attempts, key, priority, flags
  )
  values (
    (select queues.id from {schema}._private_job_queues as queues
      where queues.queue_name = add_job.queue_name),
    (select tasks.id from {schema}._private_tasks as tasks
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

drop function {schema}.add_jobs({schema}.job_spec[], boolean);
create function {schema}.add_jobs(
  specs {schema}.job_spec[],
  job_key_preserve_run_at boolean default false
) returns setof {schema}._private_jobs
language plpgsql
as $$
begin
  -- Every task identifier and queue name in the batch needs a lookup row.
  insert into {schema}._private_tasks (identifier)
  select distinct spec.identifier
  from unnest(specs) as spec
  on conflict do nothing;

  insert into {schema}._private_job_queues (queue_name)
  select distinct spec.queue_name
  from unnest(specs) as spec
  where spec.queue_name is not null
  on conflict do nothing;

  -- A job holding one of the batch's keys that is running, or has no attempts left,
  -- must not be rewritten in place: its worker acts on the old data. Release the key
  -- (so that the spec becomes a new job) and make sure the old row is never retried.
  update {schema}._private_jobs as superseded
  set key = null,
      attempts = superseded.max_attempts,
      updated_at = now()
  where superseded.key in (select spec.job_key from unnest(specs) as spec)
    and not superseded.is_available;

  -- Insert in batch order, so ids and returned rows follow the order of the specs.
  -- A spec whose key names a waiting job replaces that job's contents instead.
  return query
  insert into {schema}._private_jobs as jobs (
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
  join {schema}._private_tasks as tasks on tasks.identifier = spec.identifier
  left join {schema}._private_job_queues as queues on queues.queue_name = spec.queue_name
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

-- Jobs still locked by a live worker (locked less than four hours ago) are left alone by
-- complete_jobs(), permanently_fail_jobs(), remove_job() and reschedule_jobs(): that
-- worker will report the outcome itself.

drop function {schema}.complete_jobs(bigint[]);
create function {schema}.complete_jobs(job_ids bigint[])
returns setof {schema}._private_jobs
language sql
as $$
  delete from {schema}._private_jobs as done
  where done.id = any (complete_jobs.job_ids)
    and (done.locked_at is null or done.locked_at < now() - interval '4 hours')
  returning *;
$$;

drop function {schema}.force_unlock_workers(text[]);
create function {schema}.force_unlock_workers(worker_ids text[])
returns void
language sql
as $$
  update {schema}._private_jobs as held
  set locked_at = null, locked_by = null
  where held.locked_by = any (force_unlock_workers.worker_ids);

  update {schema}._private_job_queues as held
  set locked_at = null, locked_by = null
  where held.locked_by = any (force_unlock_workers.worker_ids);
$$;

drop function {schema}.permanently_fail_jobs(bigint[], text);
create function {schema}.permanently_fail_jobs(
  job_ids bigint[],
  error_message text default null::text
) returns setof {schema}._private_jobs
language sql
as $$
  update {schema}._private_jobs as failed
  set last_error = coalesce(permanently_fail_jobs.error_message, 'Manually marked as failed'),
      attempts = failed.max_attempts,
      updated_at = now()
  where failed.id = any (permanently_fail_jobs.job_ids)
    and (failed.locked_at is null or failed.locked_at < now() - interval '4 hours')
  returning *;
$$;

drop function {schema}.remove_job(text);
create function {schema}.remove_job(job_key text)
returns {schema}._private_jobs
language plpgsql
strict
as $$
declare
  v_job {schema}._private_jobs;
begin
  -- A job nobody is running (or whose lock expired) is simply deleted.
  delete from {schema}._private_jobs as doomed
  where doomed.key = remove_job.job_key
    and (doomed.locked_at is null or doomed.locked_at < now() - interval '4 hours')
  returning * into v_job;
  if found then
    return v_job;
  end if;

  -- A running job cannot be taken from its worker; instead it gives up its key and will
  -- not be retried. Without any such job the result is a row of nulls.
  update {schema}._private_jobs as running
  set key = null,
      attempts = running.max_attempts,
      updated_at = now()
  where running.key = remove_job.job_key
  returning * into v_job;
  return v_job;
end;
$$;

drop function {schema}.reschedule_jobs(bigint[], timestamptz, integer, integer, integer);
create function {schema}.reschedule_jobs(
  job_ids bigint[],
  run_at timestamp with time zone default null::timestamp with time zone,
  priority integer default null::integer,
  attempts integer default null::integer,
  max_attempts integer default null::integer
) returns setof {schema}._private_jobs
language sql
as $$
  -- A null argument keeps the job's current value.
  update {schema}._private_jobs as moved
  set run_at = coalesce(reschedule_jobs.run_at, moved.run_at),
      priority = coalesce(reschedule_jobs.priority::smallint, moved.priority),
      attempts = coalesce(reschedule_jobs.attempts::smallint, moved.attempts),
      max_attempts = coalesce(reschedule_jobs.max_attempts::smallint, moved.max_attempts),
      updated_at = now()
  where moved.id = any (reschedule_jobs.job_ids)
    and (moved.locked_at is null or moved.locked_at < now() - interval '4 hours')
  returning *;
$$;

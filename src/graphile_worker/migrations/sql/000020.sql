-- Migration 20: adding jobs no longer burns identity values.
--
-- "insert ... on conflict do nothing" draws a value from the identity sequence even when
-- the row already exists, so every add_job() call for a known task or queue used up a
-- task or queue id. Busy systems could run the int sequences towards their limit. The
-- lookup rows are now inserted only for names not yet present (the conflict clause
-- stays for a concurrent insert of the same new name). Behaviour is otherwise unchanged.

create or replace function {schema}.add_job(
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
  -- single job is a batch of one (add_jobs() sends the notification).
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
  select add_job.identifier
  except
  select known.identifier from {schema}._private_tasks as known
  on conflict do nothing;

  if add_job.queue_name is not null then
    insert into {schema}._private_job_queues (queue_name)
    select add_job.queue_name
    except
    select known.queue_name from {schema}._private_job_queues as known
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

  -- Revision 0 means the row was inserted just now; an existing job is no news.
  if v_job.revision = 0 then
    perform pg_notify('jobs:insert', '{"r":' || random()::text || ',"count":1}');
  end if;
  return v_job;
end;
$$;

create or replace function {schema}.add_jobs(
  specs {schema}.job_spec[],
  job_key_preserve_run_at boolean default false
) returns setof {schema}._private_jobs
language plpgsql
as $$
begin
  -- Every task identifier and queue name in the batch needs a lookup row; names already
  -- known are removed first (except also removes duplicates within the batch).
  insert into {schema}._private_tasks (identifier)
  select spec.identifier from unnest(specs) as spec
  except
  select known.identifier from {schema}._private_tasks as known
  on conflict do nothing;

  insert into {schema}._private_job_queues (queue_name)
  select spec.queue_name from unnest(specs) as spec where spec.queue_name is not null
  except
  select known.queue_name from {schema}._private_job_queues as known
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

  -- Wake the workers; the count is the batch size (an upper bound). For an empty batch
  -- array_length() is null, and so is the payload, which PostgreSQL sends as ''.
  perform pg_notify(
    'jobs:insert',
    '{"r":' || random()::text || ',"count":' || array_length(specs, 1)::text || '}'
  );

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

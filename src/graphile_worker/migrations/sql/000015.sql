-- Migration 15: remove unused trigger functions; add force_unlock_workers().
--
-- The queue-counting and updated_at trigger functions lost their triggers when migration
-- 11 dropped the old jobs table. force_unlock_workers() releases every job and queue
-- held by the given worker ids, for recovering after workers died without cleaning up.

drop function {schema}.jobs__increase_job_queue_count();
drop function {schema}.jobs__decrease_job_queue_count();
drop function {schema}.tg__update_timestamp();

create function {schema}.force_unlock_workers(worker_ids text[])
returns void
language sql
volatile
as $$
  update {schema}.jobs as held
  set locked_at = null, locked_by = null
  where held.locked_by = any (force_unlock_workers.worker_ids);

  update {schema}.job_queues as held
  set locked_at = null, locked_by = null
  where held.locked_by = any (force_unlock_workers.worker_ids);
$$;

-- Migration 6: a better index for get_job.
--
-- Jobs that have used up their attempts stay in the table but can never run again; leaving
-- them out of the index keeps get_job's scan short. Carrying locked_at lets it skip locked
-- jobs without visiting the table. Same index as Node graphile-worker's migration 000006.

create index jobs_priority_run_at_id_locked_at_without_failures_idx
  on {schema}.jobs (priority, run_at, id, locked_at)
  where attempts < max_attempts;

drop index {schema}.jobs_priority_run_at_id_idx;

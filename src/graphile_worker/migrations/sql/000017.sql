-- Migration 17: a public, read-only "jobs" view.
--
-- With the tables private (migration 16), applications and dashboards still need a
-- stable way to look at jobs. The view shows each job with its task identifier and queue
-- name resolved from the lookup tables, in the column layout of the old jobs table
-- (without the payload). Its definition is part of the shared schema, so the query has
-- exactly the shape Node graphile-worker's view has.

create view {schema}.jobs as
select
  jobs.id,
  job_queues.queue_name,
  tasks.identifier as task_identifier,
  jobs.priority,
  jobs.run_at,
  jobs.attempts,
  jobs.max_attempts,
  jobs.last_error,
  jobs.created_at,
  jobs.updated_at,
  jobs.key,
  jobs.locked_at,
  jobs.locked_by,
  jobs.revision,
  jobs.flags
from {schema}._private_jobs as jobs
join {schema}._private_tasks as tasks on tasks.id = jobs.task_id
left join {schema}._private_job_queues as job_queues on job_queues.id = jobs.job_queue_id;

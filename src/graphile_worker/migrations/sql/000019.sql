--! breaking-change
-- Migration 19: a version marker, with no schema change.
--
-- Node graphile-worker 0.17 reorganised its runner around the worker pool instead of
-- individual workers. The schema stays as it is, but workers from before this point must
-- not keep running beside newer ones, so the migration exists only to be recorded as
-- breaking: running workers that see it announced on "worker:migrate" shut down. The
-- statement below is a no-op; a migration needs something to run.
select 1;

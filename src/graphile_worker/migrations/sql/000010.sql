-- Migration 10: no default queue for jobs.
--
-- Early releases of Node graphile-worker gave every job a random queue of its own by
-- default; jobs now default to no queue at all (null). Databases created from the current
-- migration 1 never had that default, so there this changes nothing.

alter table {schema}.jobs alter column queue_name drop default;

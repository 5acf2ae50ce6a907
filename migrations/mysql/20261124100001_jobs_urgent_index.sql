-- The urgent pass of the job claim through a virtual column that is set only on pending jobs
-- with a positive priority (MySQL/MariaDB have no partial indexes). The old index began with
-- `state`, so InnoDB rewrote its entry on every claim and every finish of every job, urgent or
-- not; this one changes only for urgent jobs. (PostgreSQL and SQLite already use a partial
-- index, which ordinary jobs never enter.)
ALTER TABLE job
    ADD COLUMN urgent_priority BIGINT AS (CASE WHEN state = 0 AND priority > 0 THEN priority END) VIRTUAL,
    DROP INDEX idx_job_urgent,
    ADD INDEX idx_job_urgent (urgent_priority, run_at, id);

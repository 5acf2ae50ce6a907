-- MySQL/MariaDB only: the urgent pass of the job claim moves to an index on a virtual column
-- there. This dialect already serves it from the partial index idx_job_urgent; nothing changes.
SELECT 1;

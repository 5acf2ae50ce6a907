-- Fewer index writes per job (PostgreSQL). A job's row is written three times (enqueue, claim,
-- finish) and `state` is indexed, so no update is HOT: each one added an entry to every index
-- of the table (6 indexes, 18 index entries per job). Each index now holds only the rows its
-- queries look for (an update adds entries only to the indexes whose predicate the new row
-- meets): a keyless job without a tenant or unique key now costs 6 entries (3 of them the
-- primary key's). Every query of the engine names the state (or the column) its index is
-- partial on. MySQL/MariaDB have no partial indexes; SQLite keeps its own (it rewrites only
-- the indexes that hold a changed column).

-- The claim scan and the next due time: pending jobs in run_at order.
DROP INDEX IF EXISTS idx_job_due;
CREATE INDEX idx_job_pending ON job (run_at, id) WHERE state = 0;
-- Running jobs: the lease reaper (lease_until < now) and each worker's heartbeat.
CREATE INDEX idx_job_running ON job (lease_until) WHERE state = 1;
-- Pruning finished jobs after the retention period.
CREATE INDEX idx_job_finished ON job (finished_at) WHERE state IN (2, 4);
-- Dead letters (listing, replay, purge).
CREATE INDEX idx_job_dead ON job (id) WHERE state = 3;
-- Queue figures per kind: only the states they count.
DROP INDEX IF EXISTS idx_job_kind;
CREATE INDEX idx_job_kind ON job (kind, state) WHERE state IN (0, 1, 3, 5);
-- Group control (pause/resume/cancel a group) and per-tenant listings: only rows that have one.
DROP INDEX IF EXISTS idx_job_group;
CREATE INDEX idx_job_group ON job (group_key) WHERE group_key IS NOT NULL;
DROP INDEX IF EXISTS idx_job_tenant;
CREATE INDEX idx_job_tenant ON job (tenant_id, id) WHERE tenant_id IS NOT NULL;
-- Unique keys: only jobs that have one (enqueue's ON CONFLICT repeats the predicate).
DROP INDEX IF EXISTS uk_job_unique;
CREATE UNIQUE INDEX uk_job_unique ON job (unique_key) WHERE unique_key IS NOT NULL;
ANALYZE job;

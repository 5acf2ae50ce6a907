-- The job table is a queue: every job is inserted, updated twice and deleted, so dead tuples
-- pile up fast, and every claim's index scan wades through them until vacuum runs. Vacuum it
-- after 1 % of its rows changed (not the default 20 %) and without cost-based pauses.
ALTER TABLE job SET (autovacuum_vacuum_scale_factor = 0.01, autovacuum_vacuum_threshold = 1000,
    autovacuum_analyze_scale_factor = 0.02, autovacuum_vacuum_cost_delay = 0);
ALTER TABLE job_stat SET (autovacuum_vacuum_scale_factor = 0.05);

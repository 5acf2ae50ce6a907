-- The claim filters kinds as `(kind || '') IN (…)` so that no index on `kind` can serve it
-- (store/mod.rs push_kinds). Without statistics on that expression the planner guesses it
-- keeps 0.5 % of the rows, and with 100,000 pending jobs of one kind it chose a sequential scan
-- and a sort of all of them (on disk) for every claim of 128 instead of walking idx_job_due:
-- 60–200 ms a claim. ANALYZE now measures the expression.
CREATE STATISTICS IF NOT EXISTS job_kind_expr ON ((kind || '')) FROM job;
ANALYZE job;

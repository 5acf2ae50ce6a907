-- Job engine (crate scrm-jobs): jobs, their failed attempts, per-key limits, per-minute stats,
-- cron schedules, workers, alert rules and alerts.
-- Conventions (all dialects): BIGINT ids and integers, times in epoch milliseconds, JSON as text.
-- job.state uses seed 002's task codes: 0 pending, 1 running, 2 done, 3 failed (dead letter),
-- 4 cancelled, 5 paused.

CREATE TABLE job (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id BIGINT,
    kind VARCHAR(100) NOT NULL,
    payload TEXT NOT NULL,
    state BIGINT NOT NULL DEFAULT 0,
    priority BIGINT NOT NULL DEFAULT 0,
    run_at BIGINT NOT NULL,
    attempts BIGINT NOT NULL DEFAULT 0,
    max_attempts BIGINT NOT NULL,
    unique_key VARCHAR(191),
    group_key VARCHAR(191),
    concurrency_key VARCHAR(191),
    worker_id VARCHAR(64),
    lease_until BIGINT,
    cancel_requested BIGINT NOT NULL DEFAULT 0,
    paused_at BIGINT,
    last_error TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    started_at BIGINT,
    finished_at BIGINT
);
-- the claim scan: due pending jobs in run_at order
CREATE INDEX idx_job_due ON job (state, run_at, id);
-- the urgent pass of the claim: only pending jobs with a positive priority (few)
CREATE INDEX idx_job_urgent ON job (priority DESC, run_at, id) WHERE state = 0 AND priority > 0;
CREATE INDEX idx_job_kind ON job (kind, state);
CREATE INDEX idx_job_group ON job (group_key);
CREATE INDEX idx_job_tenant ON job (tenant_id, id);
CREATE UNIQUE INDEX uk_job_unique ON job (unique_key);

CREATE TABLE job_attempt (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id BIGINT NOT NULL,
    attempt BIGINT NOT NULL,
    worker_id VARCHAR(64),
    started_at BIGINT,
    finished_at BIGINT NOT NULL,
    outcome VARCHAR(32) NOT NULL,
    error TEXT
);
CREATE INDEX idx_job_attempt_job ON job_attempt (job_id, attempt);

CREATE TABLE job_key (
    ckey VARCHAR(191) PRIMARY KEY,
    max_running BIGINT NOT NULL,
    running BIGINT NOT NULL DEFAULT 0,
    min_gap_ms BIGINT NOT NULL DEFAULT 0,
    max_gap_ms BIGINT NOT NULL DEFAULT 0,
    next_allowed_at BIGINT NOT NULL DEFAULT 0,
    updated_at BIGINT NOT NULL
);
CREATE INDEX idx_job_key_next ON job_key (next_allowed_at);

CREATE TABLE job_stat (
    kind VARCHAR(100) NOT NULL,
    bucket BIGINT NOT NULL,
    completed BIGINT NOT NULL DEFAULT 0,
    failed BIGINT NOT NULL DEFAULT 0,
    dead BIGINT NOT NULL DEFAULT 0,
    duration_ms BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (kind, bucket)
);

CREATE TABLE job_schedule (
    name VARCHAR(191) PRIMARY KEY,
    cron VARCHAR(100) NOT NULL,
    timezone VARCHAR(64) NOT NULL,
    kind VARCHAR(100) NOT NULL,
    payload TEXT NOT NULL,
    tenant_id BIGINT,
    priority BIGINT NOT NULL DEFAULT 0,
    max_attempts BIGINT,
    enabled BIGINT NOT NULL DEFAULT 1,
    next_fire_at BIGINT NOT NULL,
    last_fire_at BIGINT,
    last_job_id BIGINT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX idx_job_schedule_next ON job_schedule (enabled, next_fire_at);

CREATE TABLE job_worker (
    id VARCHAR(64) PRIMARY KEY,
    host VARCHAR(255) NOT NULL,
    pid BIGINT NOT NULL,
    started_at BIGINT NOT NULL,
    last_seen_at BIGINT NOT NULL,
    status VARCHAR(16) NOT NULL,
    slots BIGINT NOT NULL,
    running BIGINT NOT NULL DEFAULT 0,
    rss_bytes BIGINT NOT NULL DEFAULT 0,
    kinds TEXT NOT NULL
);

CREATE TABLE job_alert_rule (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name VARCHAR(100) NOT NULL,
    kind VARCHAR(100),
    rule_type VARCHAR(32) NOT NULL,
    threshold REAL NOT NULL,
    window_ms BIGINT NOT NULL,
    min_samples BIGINT NOT NULL DEFAULT 0,
    cooldown_ms BIGINT NOT NULL,
    enabled BIGINT NOT NULL DEFAULT 1,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX uk_job_alert_rule_name ON job_alert_rule (name);

CREATE TABLE job_alert (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    rule_id BIGINT NOT NULL,
    rule_name VARCHAR(100) NOT NULL,
    kind VARCHAR(100),
    state VARCHAR(16) NOT NULL,
    observed REAL NOT NULL,
    message TEXT NOT NULL,
    fired_at BIGINT NOT NULL,
    resolved_at BIGINT,
    last_notified_at BIGINT
);
CREATE INDEX idx_job_alert_rule ON job_alert (rule_id, state);
CREATE INDEX idx_job_alert_time ON job_alert (fired_at);

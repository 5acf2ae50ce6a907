-- Automated workflows (seed 002): a trigger and ordered steps, versioned; runs per customer (or
-- group chat) on the job engine with a step log.
-- Conventions (all dialects): BIGINT ids and integers, times in epoch milliseconds, JSON as text,
-- flags 0/1, no foreign keys (every query is scoped by tenant_id instead).

-- A workflow. status: 0 draft (never published), 1 published (triggers start runs of
-- published_version_id), 2 disabled (no new runs; running runs go on). current_version is the
-- newest version (the one edits and exports show); trigger_type is the published version's.
CREATE TABLE workflow (
    id BIGINT AUTO_INCREMENT PRIMARY KEY,
    tenant_id BIGINT NOT NULL,
    name VARCHAR(100) NOT NULL,
    description TEXT,
    status BIGINT NOT NULL DEFAULT 0,
    trigger_type VARCHAR(32),
    current_version BIGINT NOT NULL,
    published_version_id BIGINT,
    published_at BIGINT,
    deleted BIGINT NOT NULL DEFAULT 0,
    created_by BIGINT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;
CREATE INDEX idx_workflow_tenant ON workflow (tenant_id, deleted, id);
CREATE INDEX idx_workflow_trigger ON workflow (tenant_id, status, trigger_type);

-- A version's definition (JSON, the shape of the API's body). A version is edited in place until
-- it is published; an edit after that makes the next version.
CREATE TABLE workflow_version (
    id BIGINT AUTO_INCREMENT PRIMARY KEY,
    tenant_id BIGINT NOT NULL,
    workflow_id BIGINT NOT NULL,
    version BIGINT NOT NULL,
    definition TEXT NOT NULL,
    published_at BIGINT,
    created_by BIGINT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;
CREATE UNIQUE INDEX uk_workflow_version ON workflow_version (workflow_id, version);

-- A run of one version for one subject (subject_type 1 customer, 2 group chat). run_key makes
-- starting idempotent: v<version id>:<subject type>:<subject id>[:<schedule tick>].
-- status (seed 002): 0 pending, 1 running, 2 done, 3 failed, 4 cancelled, 5 paused.
CREATE TABLE workflow_run (
    id BIGINT AUTO_INCREMENT PRIMARY KEY,
    tenant_id BIGINT NOT NULL,
    workflow_id BIGINT NOT NULL,
    version_id BIGINT NOT NULL,
    version BIGINT NOT NULL,
    subject_type BIGINT NOT NULL,
    subject_id BIGINT NOT NULL,
    run_key VARCHAR(120) NOT NULL,
    trigger_type VARCHAR(32) NOT NULL,
    trigger_ref VARCHAR(64),
    status BIGINT NOT NULL,
    current_step BIGINT NOT NULL DEFAULT 0,
    next_step_at BIGINT,
    paused_at BIGINT,
    error TEXT,
    started_at BIGINT,
    finished_at BIGINT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;
CREATE UNIQUE INDEX uk_workflow_run_key ON workflow_run (tenant_id, run_key);
CREATE INDEX idx_workflow_run_wf ON workflow_run (tenant_id, workflow_id, status, id);
CREATE INDEX idx_workflow_run_subject ON workflow_run (tenant_id, subject_type, subject_id, id);

-- The step log: one row per step a run reached (a condition may skip ahead, so not every step).
-- status: 0 waiting, 1 calling (an external effect is being made: recorded before it), 2 done,
-- 3 failed, 4 cancelled, 5 skipped. result is JSON (WeCom's answer, the condition's outcome …).
CREATE TABLE workflow_run_step (
    id BIGINT AUTO_INCREMENT PRIMARY KEY,
    tenant_id BIGINT NOT NULL,
    run_id BIGINT NOT NULL,
    step_index BIGINT NOT NULL,
    step_key VARCHAR(64) NOT NULL,
    step_type VARCHAR(32) NOT NULL,
    status BIGINT NOT NULL,
    due_at BIGINT NOT NULL,
    attempt_started_at BIGINT,
    result TEXT,
    error TEXT,
    finished_at BIGINT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;
CREATE UNIQUE INDEX uk_workflow_run_step ON workflow_run_step (run_id, step_index);

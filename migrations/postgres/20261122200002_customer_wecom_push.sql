-- WeCom pushes of changes made in scrm (tags and tag groups created, renamed or deleted;
-- customers' tags marked). Each row is written in the transaction of the change, together with
-- the job that pushes it; the job moves status pending -> done, or failed with WeCom's reason
-- (a failed push is also the job's dead letter, and can be retried).
-- target: 'tag', 'tag_group' or 'customer'; action: 'create', 'rename', 'delete' or 'mark';
-- detail: JSON (the WeCom id of a deleted tag or group; the tag ids of a mark).
CREATE TABLE wecom_push (
    id BIGSERIAL PRIMARY KEY,
    tenant_id BIGINT NOT NULL,
    target VARCHAR(16) NOT NULL,
    target_id BIGINT NOT NULL,
    action VARCHAR(16) NOT NULL,
    detail TEXT NOT NULL,
    status VARCHAR(16) NOT NULL,
    error VARCHAR(500),
    job_id BIGINT,
    attempts BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX idx_wecom_push_target ON wecom_push (tenant_id, target, target_id);
CREATE INDEX idx_wecom_push_status ON wecom_push (tenant_id, status, id);

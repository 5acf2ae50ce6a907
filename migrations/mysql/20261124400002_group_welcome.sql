-- Group welcome messages (入群欢迎语, seed 002's "new group member → welcome"): when a customer
-- joins one of `group_ids` (every customer group chat when empty), the group chat gets `content`
-- (text with {nickname} {date} {staff}, materials) from its owner.
CREATE TABLE group_welcome (
    id BIGINT AUTO_INCREMENT PRIMARY KEY,
    tenant_id BIGINT NOT NULL,
    name VARCHAR(100) NOT NULL,
    group_ids TEXT NOT NULL,
    content TEXT NOT NULL,
    enabled BIGINT NOT NULL DEFAULT 1,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;
CREATE INDEX idx_group_welcome_tenant ON group_welcome (tenant_id, id);

-- One welcome per join event (event_id unique: an event relayed twice welcomes once).
-- status: pending | sent | failed.
CREATE TABLE group_welcome_send (
    id BIGINT AUTO_INCREMENT PRIMARY KEY,
    tenant_id BIGINT NOT NULL,
    welcome_id BIGINT NOT NULL,
    group_id BIGINT NOT NULL,
    member_userid VARCHAR(64) NOT NULL,
    event_id VARCHAR(64) NOT NULL,
    status VARCHAR(16) NOT NULL,
    msgid VARCHAR(128),
    text TEXT,
    error TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;
CREATE UNIQUE INDEX uk_group_welcome_send_event ON group_welcome_send (tenant_id, event_id);
CREATE INDEX idx_group_welcome_send_welcome ON group_welcome_send (tenant_id, welcome_id, id);

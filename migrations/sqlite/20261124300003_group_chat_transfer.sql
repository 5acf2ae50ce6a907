-- 在职继承 / 离职继承 of customer group chats (groupchat/onjob_transfer, groupchat/transfer): one
-- record per chat. status: waiting, in_progress, done (the chat's owner changed), failed
-- (errcode: WeCom's 905xx for the chat, or the whole call's code; reason in words).
CREATE TABLE group_chat_transfer (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id BIGINT NOT NULL,
    group_id BIGINT NOT NULL,
    chat_id VARCHAR(64) NOT NULL,
    kind VARCHAR(16) NOT NULL,
    from_userid VARCHAR(64),
    to_staff_id BIGINT NOT NULL,
    to_userid VARCHAR(64) NOT NULL,
    status VARCHAR(16) NOT NULL,
    errcode BIGINT,
    reason VARCHAR(255),
    created_by BIGINT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX idx_group_chat_transfer ON group_chat_transfer (tenant_id, id);
CREATE INDEX idx_group_chat_transfer_group ON group_chat_transfer (tenant_id, group_id, status);

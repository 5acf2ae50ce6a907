-- Traffic pools for device work (issue #9): a pool of device accounts takes chat rooms of a group
-- push and auto-created groups (and counts the new friends its accounts get) as assignments with
-- no customer, so daily caps, working hours and least-loaded see all of an account's work.
-- device_chatroom: the chat rooms each device account is in (friend sync answers, groups it
-- created, member_joined events), so a pool push knows which accounts can push into a room.
-- device_group_push.pool_id: the pool a push was spread across (account_wxid is then empty).

ALTER TABLE traffic_assignment MODIFY customer_id BIGINT NULL;

CREATE TABLE device_chatroom (
    id BIGINT AUTO_INCREMENT PRIMARY KEY,
    tenant_id BIGINT NOT NULL,
    account_wxid VARCHAR(64) NOT NULL,
    chatroom_id VARCHAR(64) NOT NULL,
    name VARCHAR(128) NOT NULL,
    left_room BIGINT NOT NULL DEFAULT 0,
    updated_at BIGINT NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;
CREATE UNIQUE INDEX uk_device_chatroom ON device_chatroom (tenant_id, account_wxid, chatroom_id);
CREATE INDEX idx_device_chatroom_room ON device_chatroom (tenant_id, chatroom_id);

ALTER TABLE device_group_push ADD COLUMN pool_id BIGINT NULL;

CREATE INDEX idx_device_moment_cleanup ON device_moment (posted_at);

-- Traffic pools for device work (issue #9): a pool of device accounts takes chat rooms of a group
-- push and auto-created groups (and counts the new friends its accounts get) as assignments with
-- no customer, so daily caps, working hours and least-loaded see all of an account's work.
-- device_chatroom: the chat rooms each device account is in (friend sync answers, groups it
-- created, member_joined events), so a pool push knows which accounts can push into a room.
-- device_group_push.pool_id: the pool a push was spread across (account_wxid is then empty).

CREATE TABLE traffic_assignment_new (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id BIGINT NOT NULL,
    pool_id BIGINT NOT NULL,
    member_id BIGINT NOT NULL,
    customer_id BIGINT,
    assign_day VARCHAR(10) NOT NULL,
    source VARCHAR(16) NOT NULL,
    source_ref VARCHAR(100),
    status VARCHAR(16) NOT NULL,
    error TEXT,
    created_at BIGINT NOT NULL
);
INSERT INTO traffic_assignment_new (id, tenant_id, pool_id, member_id, customer_id, assign_day, source, source_ref, status, error, created_at)
    SELECT id, tenant_id, pool_id, member_id, customer_id, assign_day, source, source_ref, status, error, created_at FROM traffic_assignment;
DROP TABLE traffic_assignment;
ALTER TABLE traffic_assignment_new RENAME TO traffic_assignment;
CREATE UNIQUE INDEX uk_traffic_assignment_ref ON traffic_assignment (tenant_id, source_ref);
CREATE INDEX idx_traffic_assignment_member ON traffic_assignment (member_id, assign_day);
CREATE INDEX idx_traffic_assignment_pool ON traffic_assignment (tenant_id, pool_id, id);
CREATE INDEX idx_traffic_assignment_customer ON traffic_assignment (tenant_id, customer_id, status, id);

CREATE TABLE device_chatroom (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id BIGINT NOT NULL,
    account_wxid VARCHAR(64) NOT NULL,
    chatroom_id VARCHAR(64) NOT NULL,
    name VARCHAR(128) NOT NULL,
    left_room BIGINT NOT NULL DEFAULT 0,
    updated_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX uk_device_chatroom ON device_chatroom (tenant_id, account_wxid, chatroom_id);
CREATE INDEX idx_device_chatroom_room ON device_chatroom (tenant_id, chatroom_id);

ALTER TABLE device_group_push ADD COLUMN pool_id BIGINT;

CREATE INDEX idx_device_moment_cleanup ON device_moment (posted_at);

-- Device accounts as senders of seed 004's group sends, beside WeCom members.
--
-- A device account's friend is linked to the customer it is (set through the API); a group send
-- reaches a customer through a chosen device account when the customer is linked to one of its
-- friends.
ALTER TABLE device_friend ADD COLUMN customer_id BIGINT;
CREATE INDEX idx_device_friend_customer ON device_friend (tenant_id, customer_id);

-- Every sender account a group send was created with (JSON array of account ids), when it has
-- more than one or a device account among them; NULL keeps the one-WeCom-sender behaviour.
ALTER TABLE t_group_send_task ADD COLUMN sender_account_ids TEXT;

-- The device command that carries a result sent through a device account (its command_id).
ALTER TABLE t_group_send_result ADD COLUMN command_id VARCHAR(64);

-- When a command was released to its gateway (its account ACTIVE, its per-account gap over).
ALTER TABLE device_command ADD COLUMN released_at BIGINT;

-- Account health scores (seed 002's wechat:calculate-score), one row per sender account and day
-- (Asia/Shanghai) for both kinds: account_type WEWORK (staff userid) or WECHAT (device wxid).
-- The inputs are kept beside the score: relations now, and over the last 30 days adds, losses
-- (the customer deleted the account), deletions (the account deleted the customer), sends and
-- send failures.
CREATE TABLE sender_account_health (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id BIGINT NOT NULL,
    account_id VARCHAR(100) NOT NULL,
    account_type VARCHAR(16) NOT NULL,
    day VARCHAR(10) NOT NULL,
    score BIGINT NOT NULL,
    relations BIGINT NOT NULL,
    adds BIGINT NOT NULL,
    losses BIGINT NOT NULL,
    deletions BIGINT NOT NULL,
    sends BIGINT NOT NULL,
    send_failures BIGINT NOT NULL,
    computed_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX uk_sender_account_health ON sender_account_health (tenant_id, account_id, day);

-- Automation (seed 002): channel codes (渠道活码) with the customers each brought in, and
-- welcome messages (欢迎语) with a record of every welcome sent.
-- Conventions (all dialects): BIGINT ids and integers, times in epoch milliseconds, JSON as text,
-- flags 0/1, no foreign keys (every query is scoped by tenant_id instead).

-- A channel code: a WeCom 「联系我」 contact way (config_id, qr_code) whose `state` comes back in
-- the add_external_contact callback. staff is JSON [{"userid","dailyLimit"}] (0 = no limit),
-- backup_staff JSON ["userid"], active_users the userids the contact way currently routes to
-- (primary staff under their daily limit, else the backup staff). tag_ids JSON [tag id],
-- owner_staff_id the owner new customers get, welcome JSON {"text","materialIds"}.
-- sync_status: pending (WeCom not yet told), synced, failed (sync_error says why), deleted.
-- version grows on every change; synced_version is the version WeCom has.
CREATE TABLE channel_code (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id BIGINT NOT NULL,
    name VARCHAR(100) NOT NULL,
    state VARCHAR(30) NOT NULL,
    code_type BIGINT NOT NULL,
    skip_verify BIGINT NOT NULL DEFAULT 1,
    staff TEXT NOT NULL,
    backup_staff TEXT NOT NULL,
    active_users TEXT,
    tag_ids TEXT NOT NULL,
    owner_staff_id BIGINT,
    welcome TEXT,
    remark VARCHAR(255),
    config_id VARCHAR(64),
    qr_code VARCHAR(512),
    sync_status VARCHAR(16) NOT NULL,
    sync_error TEXT,
    version BIGINT NOT NULL DEFAULT 1,
    synced_version BIGINT NOT NULL DEFAULT 0,
    deleted BIGINT NOT NULL DEFAULT 0,
    created_by BIGINT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX uk_channel_code_state ON channel_code (tenant_id, state);
CREATE INDEX idx_channel_code_tenant ON channel_code (tenant_id, deleted, id);

-- A customer added through a channel code (one row per code, customer and member), with the
-- day (Asia/Shanghai) it came and, once the relation ends, the day it was lost. applied 1 once
-- the code's tags and owner were given.
CREATE TABLE channel_code_add (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id BIGINT NOT NULL,
    code_id BIGINT NOT NULL,
    customer_id BIGINT NOT NULL,
    external_userid VARCHAR(64) NOT NULL,
    staff_userid VARCHAR(64) NOT NULL,
    add_day VARCHAR(10) NOT NULL,
    added_at BIGINT NOT NULL,
    lost_day VARCHAR(10),
    lost_at BIGINT,
    applied BIGINT NOT NULL DEFAULT 0
);
CREATE UNIQUE INDEX uk_channel_code_add ON channel_code_add (tenant_id, code_id, external_userid, staff_userid);
CREATE INDEX idx_channel_code_add_day ON channel_code_add (tenant_id, code_id, add_day);
CREATE INDEX idx_channel_code_add_ext ON channel_code_add (tenant_id, external_userid, staff_userid);

-- A welcome message for members: staff_userids JSON ["userid"] (empty = every member without
-- one of their own); content JSON {"text","materialIds"} with {nickname}, {date}, {staff}.
CREATE TABLE welcome_message (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id BIGINT NOT NULL,
    name VARCHAR(100) NOT NULL,
    staff_userids TEXT NOT NULL,
    content TEXT NOT NULL,
    enabled BIGINT NOT NULL DEFAULT 1,
    created_by BIGINT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX idx_welcome_message_tenant ON welcome_message (tenant_id, id);

-- Every welcome scrm sent or could not send: source channel_code or staff (source_id the code
-- or welcome message), status sent, failed (error: WeCom's answer) or skipped (the callback had
-- no WelcomeCode). welcome_code is unique: a callback processed twice sends once.
CREATE TABLE welcome_send (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id BIGINT NOT NULL,
    welcome_code VARCHAR(128),
    customer_id BIGINT,
    external_userid VARCHAR(64) NOT NULL,
    staff_userid VARCHAR(64) NOT NULL,
    source VARCHAR(16) NOT NULL,
    source_id BIGINT NOT NULL,
    status VARCHAR(16) NOT NULL,
    content TEXT,
    error TEXT,
    created_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX uk_welcome_send_code ON welcome_send (tenant_id, welcome_code);
CREATE INDEX idx_welcome_send_tenant ON welcome_send (tenant_id, id);

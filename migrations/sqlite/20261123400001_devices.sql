-- Personal WeChat accounts through device gateways (seed 002's device side, seed 004's
-- "personal WeChat SDK" accounts), group pushes, auto group creation, group welcomes and AI
-- auto-reply. Conventions (all dialects): BIGINT ids and integers, times in epoch milliseconds,
-- JSON as text, flags 0/1, no foreign keys (every query is scoped by tenant_id).

-- A gateway: one process holding devices, connected over WebSocket with its own token (only
-- the SHA-256 of the token is stored). connected/last_seen_at are what the session saw last.
CREATE TABLE device_gateway (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id BIGINT NOT NULL,
    name VARCHAR(100) NOT NULL,
    token_hash VARCHAR(64) NOT NULL,
    connected BIGINT NOT NULL DEFAULT 0,
    last_seen_at BIGINT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX uk_device_gateway_token ON device_gateway (token_hash);
CREATE INDEX idx_device_gateway_tenant ON device_gateway (tenant_id, id);

-- A personal WeChat account on a gateway's device. status: ACTIVE, OFFLINE, EXPIRED (seed 004).
-- auto_like: like friends' new moments (seed 002's workbench:autoLike).
CREATE TABLE device_account (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id BIGINT NOT NULL,
    gateway_id BIGINT NOT NULL,
    wxid VARCHAR(64) NOT NULL,
    nickname VARCHAR(128) NOT NULL,
    status VARCHAR(16) NOT NULL,
    auto_like BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX uk_device_account ON device_account (tenant_id, wxid);
CREATE INDEX idx_device_account_gateway ON device_account (gateway_id);

-- An account's friends, kept by friend sync and the friend_added / friend_deleted events.
CREATE TABLE device_friend (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id BIGINT NOT NULL,
    account_wxid VARCHAR(64) NOT NULL,
    friend_wxid VARCHAR(64) NOT NULL,
    nickname VARCHAR(128) NOT NULL,
    deleted BIGINT NOT NULL DEFAULT 0,
    updated_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX uk_device_friend ON device_friend (tenant_id, account_wxid, friend_wxid);

-- Every command to a device: recorded (pending) before it is released to the gateway (ready),
-- sent (sent; sent again on every reconnect until acknowledged), then done or failed with the
-- gateway's result. command_id is the protocol's message id: the device dedupes on it.
-- source/source_id: what asked for it (group_push, auto_group, welcome, ai_reply, like, sync).
CREATE TABLE device_command (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id BIGINT NOT NULL,
    command_id VARCHAR(64) NOT NULL,
    account_wxid VARCHAR(64) NOT NULL,
    command VARCHAR(32) NOT NULL,
    data TEXT NOT NULL,
    status VARCHAR(16) NOT NULL,
    result TEXT,
    error TEXT,
    sends BIGINT NOT NULL DEFAULT 0,
    source VARCHAR(32) NOT NULL,
    source_id BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL,
    sent_at BIGINT,
    acked_at BIGINT
);
CREATE UNIQUE INDEX uk_device_command ON device_command (command_id);
CREATE INDEX idx_device_command_status ON device_command (status, account_wxid, id);
CREATE INDEX idx_device_command_source ON device_command (tenant_id, source, source_id);

-- Every event a gateway sent, once (its id per gateway): the dedupe of resent events.
CREATE TABLE device_event (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id BIGINT NOT NULL,
    gateway_id BIGINT NOT NULL,
    event_id VARCHAR(64) NOT NULL,
    event VARCHAR(32) NOT NULL,
    account_wxid VARCHAR(64) NOT NULL,
    data TEXT NOT NULL,
    received_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX uk_device_event ON device_event (gateway_id, event_id);

-- Conversations: messages in (from friends or chat rooms) and out (what scrm sent), the recent
-- history the AI reply reads. peer_wxid: the friend or the chat room.
CREATE TABLE device_message (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id BIGINT NOT NULL,
    account_wxid VARCHAR(64) NOT NULL,
    peer_wxid VARCHAR(64) NOT NULL,
    sender_wxid VARCHAR(64) NOT NULL,
    direction VARCHAR(8) NOT NULL,
    text TEXT NOT NULL,
    at BIGINT NOT NULL
);
CREATE INDEX idx_device_message_peer ON device_message (tenant_id, account_wxid, peer_wxid, id);

-- Friends' moments seen by an account (moment_posted events, fetch_moments results).
CREATE TABLE device_moment (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id BIGINT NOT NULL,
    account_wxid VARCHAR(64) NOT NULL,
    moment_id VARCHAR(64) NOT NULL,
    author_wxid VARCHAR(64) NOT NULL,
    text TEXT NOT NULL,
    liked BIGINT NOT NULL DEFAULT 0,
    seen_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX uk_device_moment ON device_moment (tenant_id, account_wxid, moment_id);

-- A group push (群消息推送): one content to chat rooms of one account, one command per room.
-- status: PENDING, PROCESSING, COMPLETED, PARTIAL_SUCCESS, FAILED (seed 004's names).
CREATE TABLE device_group_push (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id BIGINT NOT NULL,
    account_wxid VARCHAR(64) NOT NULL,
    task_name VARCHAR(100),
    chatroom_ids TEXT NOT NULL,
    content TEXT NOT NULL,
    status VARCHAR(16) NOT NULL,
    created_by BIGINT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX idx_device_group_push ON device_group_push (tenant_id, id);

-- An auto group creation (自动建群): status PENDING, CREATED, FAILED; the welcome is sent to
-- the new chat room after creation.
CREATE TABLE device_auto_group (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id BIGINT NOT NULL,
    account_wxid VARCHAR(64) NOT NULL,
    group_name VARCHAR(100) NOT NULL,
    member_wxids TEXT NOT NULL,
    welcome_message TEXT,
    status VARCHAR(16) NOT NULL,
    chatroom_id VARCHAR(64),
    error TEXT,
    created_by BIGINT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX idx_device_auto_group ON device_auto_group (tenant_id, id);

-- Group welcomes (入群欢迎语): for one chat room of an account, or every room ('').
CREATE TABLE device_group_welcome (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id BIGINT NOT NULL,
    account_wxid VARCHAR(64) NOT NULL,
    chatroom_id VARCHAR(64) NOT NULL,
    message TEXT NOT NULL,
    delay_secs BIGINT NOT NULL DEFAULT 3,
    enabled BIGINT NOT NULL DEFAULT 1,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX uk_device_group_welcome ON device_group_welcome (tenant_id, account_wxid, chatroom_id);

-- AI auto-reply per account: an OpenAI-compatible chat endpoint (api_key encrypted with the
-- master key), system prompt, how many recent messages to send, replies per conversation per
-- hour, working hours (HH:MM Asia/Shanghai; empty = always) and the hand-over keyword.
CREATE TABLE device_ai_config (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id BIGINT NOT NULL,
    account_wxid VARCHAR(64) NOT NULL,
    enabled BIGINT NOT NULL DEFAULT 0,
    endpoint VARCHAR(512) NOT NULL,
    api_key TEXT,
    model VARCHAR(100) NOT NULL,
    system_prompt TEXT NOT NULL,
    history_size BIGINT NOT NULL DEFAULT 10,
    max_per_hour BIGINT NOT NULL DEFAULT 20,
    work_start VARCHAR(5) NOT NULL,
    work_end VARCHAR(5) NOT NULL,
    handover_keyword VARCHAR(64) NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX uk_device_ai_config ON device_ai_config (tenant_id, account_wxid);

-- Conversations handed over to a person (the keyword was said): the bot stays silent there.
CREATE TABLE device_ai_handover (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id BIGINT NOT NULL,
    account_wxid VARCHAR(64) NOT NULL,
    peer_wxid VARCHAR(64) NOT NULL,
    at BIGINT NOT NULL
);
CREATE UNIQUE INDEX uk_device_ai_handover ON device_ai_handover (tenant_id, account_wxid, peer_wxid);

-- Every AI decision on an incoming message: replied (with the reply), skipped (why: outside
-- working hours, rate limited, handed over), handover, failed (the endpoint's error).
CREATE TABLE device_ai_reply (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id BIGINT NOT NULL,
    account_wxid VARCHAR(64) NOT NULL,
    peer_wxid VARCHAR(64) NOT NULL,
    message_id BIGINT NOT NULL,
    status VARCHAR(16) NOT NULL,
    reason VARCHAR(64),
    reply TEXT,
    error TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX uk_device_ai_reply ON device_ai_reply (tenant_id, message_id);
CREATE INDEX idx_device_ai_reply_peer ON device_ai_reply (tenant_id, account_wxid, peer_wxid, created_at);

-- Traffic distribution (流量分发, seed 002): pools of sender accounts (WeCom members or device
-- accounts) that new customers are assigned across by round robin, weight or least-loaded, with
-- a daily cap and working hours per member.
-- Conventions (all dialects): BIGINT ids and integers, times in epoch milliseconds, JSON as text,
-- flags 0/1, no foreign keys (every query is scoped by tenant_id instead).

-- A pool. strategy: round_robin | weight | least_loaded. last_member_id: the round robin's
-- position. channel_code_ids (JSON): customers arriving through these codes are assigned here.
CREATE TABLE traffic_pool (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id BIGINT NOT NULL,
    name VARCHAR(100) NOT NULL,
    strategy VARCHAR(16) NOT NULL,
    enabled BIGINT NOT NULL DEFAULT 1,
    channel_code_ids TEXT NOT NULL,
    last_member_id BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX idx_traffic_pool_tenant ON traffic_pool (tenant_id, id);

-- A member: a sender account (account_type WEWORK: staff userid, staff_id set; WECHAT: a device
-- account's wxid). daily_cap 0: none. work_days (JSON, 1 = Monday … 7), work_start/work_end
-- (HH:MM, Asia/Shanghai): when the member takes customers; none: always.
CREATE TABLE traffic_pool_member (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id BIGINT NOT NULL,
    pool_id BIGINT NOT NULL,
    account_id VARCHAR(64) NOT NULL,
    account_type VARCHAR(16) NOT NULL,
    staff_id BIGINT,
    weight BIGINT NOT NULL DEFAULT 1,
    daily_cap BIGINT NOT NULL DEFAULT 0,
    work_days TEXT,
    work_start VARCHAR(5),
    work_end VARCHAR(5),
    enabled BIGINT NOT NULL DEFAULT 1,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX uk_traffic_pool_member ON traffic_pool_member (pool_id, account_id);

-- One customer given to one member. source: channel_code | workflow | api; source_ref makes a
-- retried assignment find its first answer (NULL: not deduplicated). assign_day: Asia/Shanghai
-- YYYY-MM-DD (daily caps). status: done | failed (error says why: WeCom refused the transfer).
CREATE TABLE traffic_assignment (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id BIGINT NOT NULL,
    pool_id BIGINT NOT NULL,
    member_id BIGINT NOT NULL,
    customer_id BIGINT NOT NULL,
    assign_day VARCHAR(10) NOT NULL,
    source VARCHAR(16) NOT NULL,
    source_ref VARCHAR(100),
    status VARCHAR(16) NOT NULL,
    error TEXT,
    created_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX uk_traffic_assignment_ref ON traffic_assignment (tenant_id, source_ref);
CREATE INDEX idx_traffic_assignment_member ON traffic_assignment (member_id, assign_day);
CREATE INDEX idx_traffic_assignment_pool ON traffic_assignment (tenant_id, pool_id, id);

-- Customers (seed 001) and the customer side of seed 004: staff and departments, customers and
-- their follow relations, tag groups, tags, customer tags with a per-tag counter, group chats and
-- members, follow-ups, stages, deletion records, churn rules and warnings, blacklist, transfers,
-- the name/mobile gram index for search, daily statistics, the timeline, and the event outbox.
-- Conventions (all dialects): BIGINT ids and integers, times in epoch milliseconds, JSON as text,
-- flags 0/1, no foreign keys (every query is scoped by tenant_id instead).

-- Staff (WeCom members), filled by sync. department_ids is a JSON array of department ids.
CREATE TABLE staff (
    id BIGSERIAL PRIMARY KEY,
    tenant_id BIGINT NOT NULL,
    userid VARCHAR(64) NOT NULL,
    name VARCHAR(100) NOT NULL,
    department_ids TEXT,
    status BIGINT NOT NULL DEFAULT 1,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX uk_staff_userid ON staff (tenant_id, userid);

CREATE TABLE department (
    id BIGSERIAL PRIMARY KEY,
    tenant_id BIGINT NOT NULL,
    wecom_id BIGINT NOT NULL,
    name VARCHAR(100) NOT NULL,
    parent_id BIGINT NOT NULL DEFAULT 0,
    sort_order BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX uk_department_wecom ON department (tenant_id, wecom_id);

-- The customer (seed 001's table; corp_id is our tenant_id). status: 0 deleted (the relation
-- ended in WeCom), 1 normal, 2 lost. version grows on every change to the customer or anything
-- shown with it (tags, groups, follows), so the detail cache can check freshness with one lookup.
CREATE TABLE customer (
    id BIGSERIAL PRIMARY KEY,
    tenant_id BIGINT NOT NULL,
    external_userid VARCHAR(100) NOT NULL,
    name VARCHAR(100),
    avatar VARCHAR(255),
    type BIGINT NOT NULL DEFAULT 1,
    gender BIGINT,
    unionid VARCHAR(100),
    province VARCHAR(50),
    city VARCHAR(50),
    mobile VARCHAR(32),
    remark VARCHAR(255),
    description TEXT,
    corp_name VARCHAR(100),
    follow_user_id BIGINT,
    add_time BIGINT,
    channel VARCHAR(50),
    stage VARCHAR(32) NOT NULL DEFAULT 'new',
    blacklisted BIGINT NOT NULL DEFAULT 0,
    status BIGINT NOT NULL DEFAULT 1,
    last_active_at BIGINT,
    version BIGINT NOT NULL DEFAULT 1,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX uk_customer_external ON customer (tenant_id, external_userid);
CREATE INDEX idx_customer_tenant ON customer (tenant_id, id);
-- staff lists (seed 001's followUserId + status), newest first, with an index-only count
CREATE INDEX idx_customer_follow ON customer (tenant_id, follow_user_id, status, id);
CREATE INDEX idx_customer_status ON customer (tenant_id, status, id);
CREATE INDEX idx_customer_channel ON customer (tenant_id, channel, id);
CREATE INDEX idx_customer_mobile ON customer (tenant_id, mobile);

-- A staff member following a customer (WeCom's follow_user): one row per pair.
CREATE TABLE customer_follow (
    id BIGSERIAL PRIMARY KEY,
    tenant_id BIGINT NOT NULL,
    customer_id BIGINT NOT NULL,
    staff_id BIGINT NOT NULL,
    remark VARCHAR(255),
    description TEXT,
    add_time BIGINT,
    add_way BIGINT NOT NULL DEFAULT 0,
    state VARCHAR(64),
    status BIGINT NOT NULL DEFAULT 1,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX uk_customer_follow ON customer_follow (tenant_id, customer_id, staff_id);
CREATE INDEX idx_customer_follow_staff ON customer_follow (tenant_id, staff_id, status);

-- Tag groups and corp tags. wecom ids are NULL for tags made in scrm and not yet pushed.
CREATE TABLE tag_group (
    id BIGSERIAL PRIMARY KEY,
    tenant_id BIGINT NOT NULL,
    wecom_group_id VARCHAR(64),
    name VARCHAR(100) NOT NULL,
    sort_order BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX uk_tag_group_name ON tag_group (tenant_id, name);

CREATE TABLE tag (
    id BIGSERIAL PRIMARY KEY,
    tenant_id BIGINT NOT NULL,
    group_id BIGINT NOT NULL,
    wecom_tag_id VARCHAR(64),
    name VARCHAR(100) NOT NULL,
    sort_order BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX uk_tag_name ON tag (tenant_id, group_id, name);

-- Which customer carries which tag. The primary key serves "customers of tag T" (and the exact
-- count from the index alone); the second index serves "tags of customer C".
CREATE TABLE customer_tag (
    tenant_id BIGINT NOT NULL,
    tag_id BIGINT NOT NULL,
    customer_id BIGINT NOT NULL,
    tagged_by BIGINT,
    tagged_at BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, tag_id, customer_id)
);
CREATE INDEX idx_customer_tag_customer ON customer_tag (tenant_id, customer_id, tag_id);

-- Customers per tag, kept current in the same transaction as every tag change (SEARCH.md: the
-- tag list with counts goes from a second to under a millisecond).
CREATE TABLE tag_count (
    tenant_id BIGINT NOT NULL,
    tag_id BIGINT NOT NULL,
    customer_count BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant_id, tag_id)
);

-- Name 2-grams ('n' + 2 characters, lower-cased) and mobile 4-grams ('m' + 4 digits), looked
-- up by equality: the only keyword index that works for 2-character Chinese names on all three.
CREATE TABLE customer_gram (
    tenant_id BIGINT NOT NULL,
    gram VARCHAR(16) NOT NULL,
    customer_id BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, gram, customer_id)
);
CREATE INDEX idx_customer_gram_customer ON customer_gram (tenant_id, customer_id);

-- Customer group chats, their members and tags.
CREATE TABLE group_chat (
    id BIGSERIAL PRIMARY KEY,
    tenant_id BIGINT NOT NULL,
    chat_id VARCHAR(64) NOT NULL,
    name VARCHAR(100),
    owner_userid VARCHAR(64),
    notice TEXT,
    status BIGINT NOT NULL DEFAULT 0,
    member_count BIGINT NOT NULL DEFAULT 0,
    create_time BIGINT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX uk_group_chat ON group_chat (tenant_id, chat_id);

-- member_type: 1 staff, 2 external contact (customer_id set when we know the customer);
-- status 1 in the group, 0 left.
CREATE TABLE group_chat_member (
    id BIGSERIAL PRIMARY KEY,
    tenant_id BIGINT NOT NULL,
    group_id BIGINT NOT NULL,
    member_userid VARCHAR(100) NOT NULL,
    member_type BIGINT NOT NULL,
    customer_id BIGINT,
    name VARCHAR(100),
    join_time BIGINT,
    join_scene BIGINT NOT NULL DEFAULT 0,
    invitor_userid VARCHAR(64),
    status BIGINT NOT NULL DEFAULT 1,
    left_at BIGINT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX uk_group_chat_member ON group_chat_member (tenant_id, group_id, member_userid);
CREATE INDEX idx_group_chat_member_customer ON group_chat_member (tenant_id, customer_id, group_id);

CREATE TABLE group_chat_tag (
    tenant_id BIGINT NOT NULL,
    group_id BIGINT NOT NULL,
    tag_id BIGINT NOT NULL,
    tagged_at BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, group_id, tag_id)
);

-- Follow-up records (跟进记录); next_follow_at with reminded 0/1 drives the reminder.
CREATE TABLE follow_up (
    id BIGSERIAL PRIMARY KEY,
    tenant_id BIGINT NOT NULL,
    customer_id BIGINT NOT NULL,
    user_id BIGINT,
    staff_id BIGINT,
    content TEXT NOT NULL,
    follow_type VARCHAR(32) NOT NULL,
    next_follow_at BIGINT,
    reminded BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL
);
CREATE INDEX idx_follow_up_customer ON follow_up (tenant_id, customer_id, id);
CREATE INDEX idx_follow_up_due ON follow_up (reminded, next_follow_at);

-- A tenant's stages; when it has none, the defaults (new, nurturing, active, won, lost) apply.
CREATE TABLE customer_stage (
    id BIGSERIAL PRIMARY KEY,
    tenant_id BIGINT NOT NULL,
    code VARCHAR(32) NOT NULL,
    name VARCHAR(100) NOT NULL,
    sort_order BIGINT NOT NULL DEFAULT 0,
    is_final BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX uk_customer_stage ON customer_stage (tenant_id, code);

-- Deletion records: kind 'staff_deleted_customer' or 'customer_deleted_staff'.
CREATE TABLE customer_deletion (
    id BIGSERIAL PRIMARY KEY,
    tenant_id BIGINT NOT NULL,
    customer_id BIGINT,
    external_userid VARCHAR(100) NOT NULL,
    customer_name VARCHAR(100),
    staff_userid VARCHAR(64),
    kind VARCHAR(32) NOT NULL,
    occurred_at BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX idx_customer_deletion ON customer_deletion (tenant_id, id);

-- Churn rules (rule_type 'deleted_staff' or 'no_interaction' after `days`) and their warnings
-- (status 0 open, 1 handled).
CREATE TABLE churn_rule (
    id BIGSERIAL PRIMARY KEY,
    tenant_id BIGINT NOT NULL,
    name VARCHAR(100) NOT NULL,
    rule_type VARCHAR(32) NOT NULL,
    days BIGINT NOT NULL DEFAULT 0,
    enabled BIGINT NOT NULL DEFAULT 1,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX idx_churn_rule ON churn_rule (tenant_id);

CREATE TABLE churn_warning (
    id BIGSERIAL PRIMARY KEY,
    tenant_id BIGINT NOT NULL,
    customer_id BIGINT NOT NULL,
    rule_id BIGINT,
    reason VARCHAR(255) NOT NULL,
    status BIGINT NOT NULL DEFAULT 0,
    handled_by BIGINT,
    handled_at BIGINT,
    created_at BIGINT NOT NULL
);
CREATE INDEX idx_churn_warning ON churn_warning (tenant_id, status, id);
CREATE INDEX idx_churn_warning_customer ON churn_warning (tenant_id, customer_id);

-- The blacklist (customer.blacklisted mirrors it for fast exclusion from sends).
CREATE TABLE customer_blacklist (
    id BIGSERIAL PRIMARY KEY,
    tenant_id BIGINT NOT NULL,
    customer_id BIGINT NOT NULL,
    reason VARCHAR(255),
    created_by BIGINT,
    created_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX uk_customer_blacklist ON customer_blacklist (tenant_id, customer_id);

-- Assignments and transfers. kind: 'assign', 'on_job' (在职继承), 'resigned' (离职继承);
-- status: 'waiting', 'in_progress', 'done', 'failed' (+ reason), kept current by polling
-- WeCom's transfer_result.
CREATE TABLE customer_transfer (
    id BIGSERIAL PRIMARY KEY,
    tenant_id BIGINT NOT NULL,
    customer_id BIGINT NOT NULL,
    kind VARCHAR(16) NOT NULL,
    from_staff_id BIGINT,
    to_staff_id BIGINT NOT NULL,
    status VARCHAR(16) NOT NULL,
    reason VARCHAR(255),
    created_by BIGINT,
    takeover_time BIGINT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX idx_customer_transfer ON customer_transfer (tenant_id, id);
CREATE INDEX idx_customer_transfer_customer ON customer_transfer (tenant_id, customer_id);
CREATE INDEX idx_customer_transfer_status ON customer_transfer (status, updated_at);

-- Daily statistics, kept incrementally on each change: dim '' (the whole tenant), 'channel' or
-- 'staff', with dim_value the channel or the staff id.
CREATE TABLE customer_stats_daily (
    tenant_id BIGINT NOT NULL,
    day VARCHAR(10) NOT NULL,
    dim VARCHAR(16) NOT NULL,
    dim_value VARCHAR(64) NOT NULL,
    added BIGINT NOT NULL DEFAULT 0,
    lost BIGINT NOT NULL DEFAULT 0,
    active BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant_id, day, dim, dim_value)
);

-- The customer timeline: everything that happened to a customer, newest first.
CREATE TABLE customer_timeline (
    id BIGSERIAL PRIMARY KEY,
    tenant_id BIGINT NOT NULL,
    customer_id BIGINT NOT NULL,
    kind VARCHAR(32) NOT NULL,
    summary VARCHAR(255) NOT NULL,
    detail TEXT,
    occurred_at BIGINT NOT NULL
);
CREATE INDEX idx_customer_timeline ON customer_timeline (tenant_id, customer_id, id);

-- Domain events written in the same transaction as the change; the relay publishes them.
CREATE TABLE event_outbox (
    id BIGSERIAL PRIMARY KEY,
    tenant_id BIGINT NOT NULL,
    event_id VARCHAR(64) NOT NULL,
    event_type VARCHAR(64) NOT NULL,
    aggregate_id VARCHAR(100) NOT NULL,
    payload TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    published_at BIGINT,
    attempts BIGINT NOT NULL DEFAULT 0,
    last_error TEXT
);
CREATE UNIQUE INDEX uk_event_outbox_event ON event_outbox (event_id);
CREATE INDEX idx_event_outbox_pending ON event_outbox (published_at, id);
CREATE INDEX idx_event_outbox_tenant ON event_outbox (tenant_id, id);

-- Operations (seed 000 and seed 004): the material library, SOP templates, steps, executions and
-- their step log, group-send / mass tasks with a result row per customer, the send batches that
-- make mass sends exactly-once, and per-tenant operation settings.
-- Conventions (all dialects): BIGINT ids and integers, times in epoch milliseconds, JSON as text,
-- flags 0/1, no foreign keys (every query is scoped by tenant_id instead).

-- A material (素材). material_type: text, image, link, miniprogram, file, video. content is JSON
-- (text, title, url, desc, picUrl, appid, page …); file_data the file as base64, uploaded to WeCom
-- (upload_attachment) on first use; media_id is reused until media_expires_at (3 days) nears.
CREATE TABLE material (
    id BIGSERIAL PRIMARY KEY,
    tenant_id BIGINT NOT NULL,
    material_type VARCHAR(16) NOT NULL,
    title VARCHAR(200) NOT NULL,
    content TEXT NOT NULL,
    file_name VARCHAR(200),
    file_data TEXT,
    media_id VARCHAR(255),
    media_expires_at BIGINT,
    created_by BIGINT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX idx_material_tenant ON material (tenant_id, material_type, id);

-- SOP templates (seed 000). template_type 1 customer, 2 group; trigger_type 1 add friend, 2 tag,
-- 3 join group, 4 manual; trigger_config JSON ({"tagIds":[…]} / {"groupIds":[…]}); status 1
-- enabled, 0 disabled; deleted 1 keeps the row for the executions that refer to it.
CREATE TABLE sop_template (
    id BIGSERIAL PRIMARY KEY,
    tenant_id BIGINT NOT NULL,
    template_name VARCHAR(100) NOT NULL,
    template_type BIGINT NOT NULL,
    trigger_type BIGINT NOT NULL,
    trigger_config TEXT,
    description TEXT,
    status BIGINT NOT NULL DEFAULT 1,
    deleted BIGINT NOT NULL DEFAULT 0,
    created_by BIGINT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX idx_sop_template_tenant ON sop_template (tenant_id, deleted, id);
CREATE INDEX idx_sop_template_trigger ON sop_template (tenant_id, trigger_type, deleted);

-- Steps: step_type 1 send message, 2 tag, 3 push material, 4 assign customer, 5 remind staff;
-- delay_time in delay_unit (minute/hour/day) after the trigger; action_content JSON.
CREATE TABLE sop_step (
    id BIGSERIAL PRIMARY KEY,
    tenant_id BIGINT NOT NULL,
    template_id BIGINT NOT NULL,
    step_order BIGINT NOT NULL,
    step_name VARCHAR(100) NOT NULL,
    step_type BIGINT NOT NULL,
    delay_time BIGINT NOT NULL,
    delay_unit VARCHAR(8) NOT NULL,
    action_content TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX idx_sop_step_template ON sop_step (tenant_id, template_id, step_order);

-- One run of a template for one target (target_type 1 customer, 2 group chat). status (seed
-- 000): 0 running, 1 done, 2 paused, 3 failed, plus 4 cancelled. active_key is
-- 'template:type:target' while running or paused and NULL after, so the unique index refuses a
-- second concurrent run of one template for one target.
CREATE TABLE sop_execution (
    id BIGSERIAL PRIMARY KEY,
    tenant_id BIGINT NOT NULL,
    template_id BIGINT NOT NULL,
    target_type BIGINT NOT NULL,
    target_id BIGINT NOT NULL,
    trigger_type BIGINT NOT NULL,
    status BIGINT NOT NULL DEFAULT 0,
    active_key VARCHAR(100),
    current_step BIGINT NOT NULL DEFAULT 0,
    total_steps BIGINT NOT NULL,
    triggered_at BIGINT NOT NULL,
    paused_at BIGINT,
    finished_at BIGINT,
    error TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX uk_sop_execution_active ON sop_execution (tenant_id, active_key);
CREATE INDEX idx_sop_execution_template ON sop_execution (tenant_id, template_id, status, id);
CREATE INDEX idx_sop_execution_status ON sop_execution (tenant_id, status, id);

-- The step log: each execution's steps as they were when it started (a template edit does not
-- change a running execution), when each is due, and what happened (result: WeCom's answer).
-- status 0 pending, 1 calling (intent recorded before a WeCom send), 2 done, 3 failed,
-- 4 cancelled, 5 skipped.
CREATE TABLE sop_execution_step (
    id BIGSERIAL PRIMARY KEY,
    tenant_id BIGINT NOT NULL,
    execution_id BIGINT NOT NULL,
    step_order BIGINT NOT NULL,
    step_name VARCHAR(100) NOT NULL,
    step_type BIGINT NOT NULL,
    action_content TEXT NOT NULL,
    due_at BIGINT NOT NULL,
    status BIGINT NOT NULL DEFAULT 0,
    attempt_started_at BIGINT,
    msgid VARCHAR(128),
    result TEXT,
    executed_at BIGINT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX idx_sop_execution_step ON sop_execution_step (tenant_id, execution_id, step_order);

-- Group-send / mass tasks: seed 004's t_group_send_task plus seed 000's task_type (1 message,
-- 2 tag, 3 assign). source: group_send (seed 004), mass_task (seed 000), mass_send (seed 002).
-- sender_account_id: the sending member's userid, or NULL when each customer's owner sends.
-- target_type TAG / GROUP / CUSTOMER_IDS / MIXED; target_ids the target JSON as given.
-- status PENDING, PROCESSING, COMPLETED, PARTIAL_SUCCESS, FAILED, CANCELLED.
-- action: for tag tasks {"tagIds":[…]}, for assign tasks {"staffId":…}.
CREATE TABLE t_group_send_task (
    id BIGSERIAL PRIMARY KEY,
    tenant_id BIGINT NOT NULL,
    user_id BIGINT NOT NULL,
    source VARCHAR(16) NOT NULL,
    task_type BIGINT NOT NULL DEFAULT 1,
    sender_account_id VARCHAR(100),
    task_name VARCHAR(100),
    target_type VARCHAR(20) NOT NULL,
    target_ids TEXT NOT NULL,
    message_type BIGINT,
    message_content TEXT,
    action TEXT,
    target_count BIGINT NOT NULL DEFAULT 0,
    success_count BIGINT NOT NULL DEFAULT 0,
    failed_count BIGINT NOT NULL DEFAULT 0,
    status VARCHAR(20) NOT NULL,
    scheduled_time BIGINT,
    started_at BIGINT,
    finished_at BIGINT,
    error TEXT,
    create_time BIGINT NOT NULL,
    update_time BIGINT NOT NULL
);
CREATE INDEX idx_gst_tenant ON t_group_send_task (tenant_id, id);
CREATE INDEX idx_gst_status ON t_group_send_task (tenant_id, status, id);
CREATE INDEX idx_gst_sender ON t_group_send_task (tenant_id, sender_account_id);
CREATE INDEX idx_gst_scheduled ON t_group_send_task (scheduled_time);

-- One row per target customer: PENDING (recorded) → SUBMITTED (in a WeCom mass send) →
-- SUCCESS / FAILED with error_message (blacklisted, deleted, not a friend, quota, cancelled …).
-- batch_id is the send batch the customer went out in.
CREATE TABLE t_group_send_result (
    id BIGSERIAL PRIMARY KEY,
    tenant_id BIGINT NOT NULL,
    task_id BIGINT NOT NULL,
    customer_id BIGINT NOT NULL,
    external_userid VARCHAR(100),
    sender_userid VARCHAR(64),
    batch_id BIGINT,
    status VARCHAR(20) NOT NULL,
    error_message TEXT,
    create_time BIGINT NOT NULL,
    update_time BIGINT NOT NULL
);
CREATE UNIQUE INDEX uk_gsr_customer ON t_group_send_result (task_id, customer_id);
CREATE INDEX idx_gsr_task_status ON t_group_send_result (task_id, status, id);
CREATE INDEX idx_gsr_task_sender ON t_group_send_result (task_id, sender_userid, id);
CREATE INDEX idx_gsr_batch ON t_group_send_result (batch_id, external_userid);

-- A send batch: ≤ 10,000 recipients of one sender in one add_msg_template call. The state is
-- the intent record that makes the send exactly-once: 0 planned, 1 calling (written and committed
-- before the call; after a crash the batch is reconciled with get_groupmsg_list_v2 before any
-- new call), 2 submitted (msgid known, polling), 3 final, 4 cancelled, 5 failed.
CREATE TABLE group_send_batch (
    id BIGSERIAL PRIMARY KEY,
    tenant_id BIGINT NOT NULL,
    task_id BIGINT NOT NULL,
    sender_userid VARCHAR(64) NOT NULL,
    first_result_id BIGINT NOT NULL,
    last_result_id BIGINT NOT NULL,
    recipient_count BIGINT NOT NULL,
    state BIGINT NOT NULL DEFAULT 0,
    msgid VARCHAR(128),
    calls BIGINT NOT NULL DEFAULT 0,
    attempt_started_at BIGINT,
    submitted_at BIGINT,
    reminders BIGINT NOT NULL DEFAULT 0,
    last_reminded_at BIGINT,
    error TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX idx_gsb_task ON group_send_batch (task_id, state);
CREATE INDEX idx_gsb_msgid ON group_send_batch (tenant_id, msgid);

-- Per-tenant operation settings (poll interval, reminders, limits); defaults in code.
CREATE TABLE operation_setting (
    tenant_id BIGINT NOT NULL,
    setting_key VARCHAR(64) NOT NULL,
    setting_value VARCHAR(255) NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, setting_key)
);

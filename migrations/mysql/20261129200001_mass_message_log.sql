-- The monthly mass-message quota (operation setting mass.monthly_quota) counts every
-- add_msg_template message a customer got from the company, as WeCom does: group sends and mass
-- tasks (their t_group_send_result rows) and SOP / workflow send steps, each recorded here in
-- the transaction that logs the step done. source: sop | workflow; ref_id: the step log row
-- (sop_execution_step.id / workflow_run_step.id).
CREATE TABLE mass_message_log (
    id BIGINT AUTO_INCREMENT PRIMARY KEY,
    tenant_id BIGINT NOT NULL,
    customer_id BIGINT NOT NULL,
    source VARCHAR(16) NOT NULL,
    ref_id BIGINT NOT NULL,
    sent_at BIGINT NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;
CREATE INDEX idx_mass_message_log_customer ON mass_message_log (tenant_id, customer_id, sent_at);
CREATE INDEX idx_mass_message_log_month ON mass_message_log (tenant_id, sent_at);
-- A customer's group-send results of the month: the per-customer quota check of an SOP or
-- workflow send step.
CREATE INDEX idx_gsr_tenant_customer ON t_group_send_result (tenant_id, customer_id, update_time);

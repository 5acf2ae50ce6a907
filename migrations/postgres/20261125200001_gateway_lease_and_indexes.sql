-- A gateway's session lease: the one session (in any scrm process) that sends its commands.
-- lease_owner is the holding session's id, lease_until (epoch ms) when the lease lapses unless
-- the holder renews it; a session that closes cleanly clears both so another takes over at once.
ALTER TABLE device_gateway ADD COLUMN lease_owner VARCHAR(64);
ALTER TABLE device_gateway ADD COLUMN lease_until BIGINT;

-- The health score's WeCom send-failure count per sender (tenant, sender, status, since).
CREATE INDEX idx_gsr_tenant_sender ON t_group_send_result (tenant_id, sender_userid, status, update_time);

-- A customer's latest done traffic-pool assignment (device group sends use the account it names).
CREATE INDEX idx_traffic_assignment_customer ON traffic_assignment (tenant_id, customer_id, status, id);

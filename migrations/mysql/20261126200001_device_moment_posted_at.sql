-- When a friend posted a moment (the device's postedAt, else when scrm first saw it): the
-- moments list (GET /api/v1/devices/moments) is newest first by it.
ALTER TABLE device_moment ADD COLUMN posted_at BIGINT NOT NULL DEFAULT 0;
UPDATE device_moment SET posted_at = seen_at;
CREATE INDEX idx_device_moment_posted ON device_moment (tenant_id, posted_at, id);

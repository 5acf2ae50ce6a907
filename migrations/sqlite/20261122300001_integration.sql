-- Integration (seed 003): WeCom configurations, callback inbox, sync logs and the content hashes
-- that make syncs incremental. Conventions as elsewhere: BIGINT, epoch ms, JSON as TEXT, no FKs.

-- One WeCom configuration per tenant. Secrets (*_enc) are AES-256-GCM ciphertexts under the
-- process master key (base64 of nonce || ciphertext), never plaintext.
CREATE TABLE wework_config (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id BIGINT NOT NULL,
    corp_id VARCHAR(64) NOT NULL,
    agent_id BIGINT NOT NULL,
    corp_secret_enc TEXT NOT NULL,
    contact_secret_enc TEXT,
    contacts_secret_enc TEXT,
    token_enc TEXT,
    aes_key_enc TEXT,
    api_base VARCHAR(255),
    enabled BIGINT NOT NULL DEFAULT 1,
    callback_verified_at BIGINT,
    last_callback_at BIGINT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX uk_wework_config_tenant ON wework_config (tenant_id);

-- Received callbacks. dedupe_key is the event's identity, so WeCom's retries of one event are
-- stored once. status: pending, processing, done, failed, ignored.
CREATE TABLE wework_callback_event (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id BIGINT NOT NULL,
    config_id BIGINT NOT NULL,
    dedupe_key VARCHAR(191) NOT NULL,
    event VARCHAR(64) NOT NULL,
    change_type VARCHAR(64) NOT NULL,
    raw_xml TEXT NOT NULL,
    status VARCHAR(16) NOT NULL,
    attempts BIGINT NOT NULL DEFAULT 0,
    error TEXT,
    received_at BIGINT NOT NULL,
    processed_at BIGINT
);
CREATE UNIQUE INDEX uk_wework_callback_dedupe ON wework_callback_event (config_id, dedupe_key);
CREATE INDEX idx_wework_callback_tenant ON wework_callback_event (tenant_id, status, id);

-- One row per sync run (seed 003's sync log). status: pending, running, success, failed, partial.
-- errors: JSON array of {item, reason}; progress_* is the live progress the status route shows.
CREATE TABLE wework_sync_log (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id BIGINT NOT NULL,
    config_id BIGINT NOT NULL,
    sync_type VARCHAR(16) NOT NULL,
    force_full BIGINT NOT NULL DEFAULT 0,
    trigger_by VARCHAR(32) NOT NULL,
    status VARCHAR(16) NOT NULL,
    phase VARCHAR(32),
    fetched BIGINT NOT NULL DEFAULT 0,
    created BIGINT NOT NULL DEFAULT 0,
    updated BIGINT NOT NULL DEFAULT 0,
    deleted BIGINT NOT NULL DEFAULT 0,
    failed BIGINT NOT NULL DEFAULT 0,
    unchanged BIGINT NOT NULL DEFAULT 0,
    api_calls BIGINT NOT NULL DEFAULT 0,
    progress_done BIGINT NOT NULL DEFAULT 0,
    progress_total BIGINT NOT NULL DEFAULT 0,
    errors TEXT,
    message TEXT,
    started_at BIGINT,
    finished_at BIGINT,
    duration_ms BIGINT,
    created_at BIGINT NOT NULL
);
CREATE INDEX idx_wework_sync_log ON wework_sync_log (tenant_id, sync_type, id);
CREATE INDEX idx_wework_sync_log_status ON wework_sync_log (tenant_id, status, id);

-- What each WeCom object looked like at the last sync (a hash of its content), so an incremental
-- sync writes only what changed and notices what disappeared. kind: department, staff, tag,
-- customer, group.
CREATE TABLE wework_sync_hash (
    tenant_id BIGINT NOT NULL,
    kind VARCHAR(16) NOT NULL,
    wecom_id VARCHAR(100) NOT NULL,
    hash VARCHAR(64) NOT NULL,
    synced_at BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, kind, wecom_id)
);

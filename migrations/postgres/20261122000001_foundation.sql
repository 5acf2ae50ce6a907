-- Foundation: tenants (companies), users, tokens, login throttling, audit log.
-- Conventions (all dialects): BIGINT ids and integers, times in epoch milliseconds, JSON as text.

CREATE TABLE tenant (
    id BIGSERIAL PRIMARY KEY,
    name VARCHAR(100) NOT NULL,
    corp_id VARCHAR(64),
    status BIGINT NOT NULL DEFAULT 1,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX uk_tenant_name ON tenant (name);
CREATE UNIQUE INDEX uk_tenant_corp ON tenant (corp_id);

CREATE TABLE app_user (
    id BIGSERIAL PRIMARY KEY,
    tenant_id BIGINT NOT NULL,
    username VARCHAR(64) NOT NULL,
    display_name VARCHAR(100) NOT NULL,
    password_hash VARCHAR(255) NOT NULL,
    role VARCHAR(32) NOT NULL,
    status BIGINT NOT NULL DEFAULT 1,
    last_login_at BIGINT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX uk_app_user_username ON app_user (username);
CREATE INDEX idx_app_user_tenant ON app_user (tenant_id);

CREATE TABLE auth_token (
    id BIGSERIAL PRIMARY KEY,
    tenant_id BIGINT NOT NULL,
    user_id BIGINT NOT NULL,
    kind VARCHAR(16) NOT NULL,
    name VARCHAR(100) NOT NULL,
    token_hash VARCHAR(64) NOT NULL,
    token_prefix VARCHAR(16) NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT,
    last_used_at BIGINT,
    revoked_at BIGINT
);
CREATE UNIQUE INDEX uk_auth_token_hash ON auth_token (token_hash);
CREATE INDEX idx_auth_token_user ON auth_token (tenant_id, user_id);

CREATE TABLE login_throttle (
    throttle_key VARCHAR(191) PRIMARY KEY,
    failures BIGINT NOT NULL,
    window_start BIGINT NOT NULL,
    locked_until BIGINT NOT NULL DEFAULT 0
);

CREATE TABLE audit_log (
    id BIGSERIAL PRIMARY KEY,
    tenant_id BIGINT NOT NULL,
    user_id BIGINT,
    username VARCHAR(64),
    action VARCHAR(100) NOT NULL,
    target_type VARCHAR(64) NOT NULL,
    target_id VARCHAR(100),
    detail TEXT,
    request_id VARCHAR(64),
    created_at BIGINT NOT NULL
);
CREATE INDEX idx_audit_tenant_time ON audit_log (tenant_id, created_at);

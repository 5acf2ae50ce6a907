-- Exports of customer lists too large to answer inline (or asked for with "async": true): the
-- request is recorded with its filter and a job builds the file; the file is kept in the
-- database in chunks of at most 1 MiB (so any API process, on any machine, can serve the
-- download) until it expires. Status: pending, running, done, failed.
CREATE TABLE customer_export (
    id BIGINT AUTO_INCREMENT PRIMARY KEY,
    tenant_id BIGINT NOT NULL,
    format VARCHAR(8) NOT NULL,
    filter TEXT NOT NULL,
    status VARCHAR(16) NOT NULL,
    row_count BIGINT NOT NULL DEFAULT 0,
    byte_count BIGINT NOT NULL DEFAULT 0,
    file_name VARCHAR(128) NOT NULL,
    error TEXT,
    created_by BIGINT,
    created_at BIGINT NOT NULL,
    finished_at BIGINT,
    expires_at BIGINT
);
CREATE INDEX idx_customer_export_tenant ON customer_export (tenant_id, id);
CREATE INDEX idx_customer_export_expiry ON customer_export (expires_at);

CREATE TABLE customer_export_chunk (
    export_id BIGINT NOT NULL,
    seq BIGINT NOT NULL,
    data LONGBLOB NOT NULL,
    PRIMARY KEY (export_id, seq)
);

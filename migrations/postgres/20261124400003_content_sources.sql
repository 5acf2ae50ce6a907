-- Content collection (内容采集, seed 002): feeds (RSS/Atom) and pages fetched into the material
-- library. kind: feed | page. next_fetch_at: when the collection schedule fetches it next.
CREATE TABLE content_source (
    id BIGSERIAL PRIMARY KEY,
    tenant_id BIGINT NOT NULL,
    name VARCHAR(100) NOT NULL,
    url VARCHAR(1000) NOT NULL,
    kind VARCHAR(16) NOT NULL,
    interval_minutes BIGINT NOT NULL,
    enabled BIGINT NOT NULL DEFAULT 1,
    next_fetch_at BIGINT NOT NULL,
    last_fetched_at BIGINT,
    last_error TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX idx_content_source_tenant ON content_source (tenant_id, id);
CREATE INDEX idx_content_source_due ON content_source (enabled, next_fetch_at);

-- What a source gave: item_key is the item's guid / Atom id, else its link (the page URL for a
-- page); unique per source, so an item is collected once.
CREATE TABLE content_source_item (
    id BIGSERIAL PRIMARY KEY,
    tenant_id BIGINT NOT NULL,
    source_id BIGINT NOT NULL,
    item_key VARCHAR(255) NOT NULL,
    material_id BIGINT NOT NULL,
    title VARCHAR(200) NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX uk_content_source_item ON content_source_item (tenant_id, source_id, item_key);

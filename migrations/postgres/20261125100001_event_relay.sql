-- The event relay to message brokers (events/relay): the order in which outbox rows became
-- visible (relay_seq, given by the relay itself, so a row whose transaction commits after a
-- higher id's is not skipped), and one cursor per sink advanced only after the broker confirmed.
ALTER TABLE event_outbox ADD COLUMN relay_seq BIGINT;
CREATE UNIQUE INDEX uk_event_outbox_relay_seq ON event_outbox (relay_seq);
CREATE INDEX idx_event_outbox_relay_pending ON event_outbox (relay_seq, id);

CREATE TABLE event_relay_cursor (
    sink VARCHAR(64) NOT NULL PRIMARY KEY,
    last_seq BIGINT NOT NULL DEFAULT 0,
    last_outbox_id BIGINT NOT NULL DEFAULT 0,
    published BIGINT NOT NULL DEFAULT 0,
    failures BIGINT NOT NULL DEFAULT 0,
    last_error TEXT,
    updated_at BIGINT NOT NULL
);

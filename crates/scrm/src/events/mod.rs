//! Domain events: the outbox and the in-process subscribers.
//!
//! A change and the events it causes commit together or not at all: [`emit`] writes one row of
//! `event_outbox` inside the caller's transaction (seed 001 published to RabbitMQ *after* the
//! write, so a crash in between lost the event). The relay ([`relay_once`]) later reads
//! unpublished rows in id order, hands each to the in-process subscribers registered with
//! [`subscribe`] (SOP triggers, workflows), and marks it published. The routing key of an event
//! is its type (`customer.created`, `customer.tag.added` …), as in seed 001's producer.
//!
//! [`relay_once`] runs as the `events.relay` job (jobs/mod.rs). The brokers — RabbitMQ exchange
//! `scrm.events` and NATS JetStream — are [`Sink`]s driven by [`relay`], each with its own cursor
//! and job, so a broker that is down holds back neither the subscribers nor the other broker.
//! TODO: signed webhooks as a third sink.

use std::sync::{Arc, OnceLock, RwLock};

use futures::future::BoxFuture;
pub mod relay;

use scrm_db::{Db, DbResult, Tx, query};
use serde::Serialize;

use crate::state::{iso, now_ms};

/// Event types (and routing keys) scrm emits.
pub mod kind {
    pub const CUSTOMER_CREATED: &str = "customer.created";
    pub const CUSTOMER_UPDATED: &str = "customer.updated";
    pub const CUSTOMER_DELETED: &str = "customer.deleted";
    pub const CUSTOMER_TAG_ADDED: &str = "customer.tag.added";
    pub const CUSTOMER_TAG_REMOVED: &str = "customer.tag.removed";
    pub const CUSTOMER_TRANSFERRED: &str = "customer.transferred";
    pub const CUSTOMER_STAGE_CHANGED: &str = "customer.stage.changed";
    pub const CUSTOMER_BLACKLISTED: &str = "customer.blacklisted";
    pub const CUSTOMER_UNBLACKLISTED: &str = "customer.unblacklisted";
    pub const CUSTOMER_FOLLOW_UP_CREATED: &str = "customer.followup.created";
    pub const TAG_DELETED: &str = "tag.deleted";
    pub const GROUP_MEMBER_JOINED: &str = "group.member.joined";
    pub const GROUP_MEMBER_LEFT: &str = "group.member.left";
    pub const GROUP_CHAT_TRANSFERRED: &str = "group.transferred";
}

/// One event as subscribers and sinks see it: seed 001's message
/// (`{eventId, timestamp, data}`) plus its type, tenant and aggregate.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    /// The outbox row id: events of one tenant are delivered in this order.
    #[serde(skip)]
    pub seq: i64,
    pub event_id: String,
    pub event_type: String,
    pub tenant_id: i64,
    pub aggregate_id: String,
    pub timestamp: String,
    pub data: serde_json::Value,
}

/// Write an event to the outbox inside `tx`; it is published only if `tx` commits.
pub async fn emit(
    tx: &mut Tx,
    tenant_id: i64,
    event_type: &str,
    aggregate_id: impl ToString,
    payload: serde_json::Value,
) -> DbResult<()> {
    tx.execute(
        query(
            "INSERT INTO event_outbox (tenant_id, event_id, event_type, aggregate_id, payload, created_at) \
             VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(tenant_id)
        .bind(uuid::Uuid::now_v7().to_string())
        .bind(event_type)
        .bind(aggregate_id.to_string())
        .bind(payload.to_string())
        .bind(now_ms()),
    )
    .await
    .map(|_| ())
}

/// Write many events (type, aggregate id, payload) to the outbox inside `tx`, many rows a
/// statement, in the order given.
pub async fn emit_many(
    tx: &mut Tx,
    tenant_id: i64,
    events: &[(&str, String, serde_json::Value)],
) -> DbResult<()> {
    let now = now_ms();
    for chunk in events.chunks(500) {
        let mut q = query(
            "INSERT INTO event_outbox (tenant_id, event_id, event_type, aggregate_id, payload, created_at) VALUES ",
        );
        for (i, (kind, aggregate, payload)) in chunk.iter().enumerate() {
            if i > 0 {
                q.push_sql(", ");
            }
            q.push_sql("(?, ?, ?, ?, ?, ?)")
                .push_bind(tenant_id)
                .push_bind(uuid::Uuid::now_v7().to_string())
                .push_bind(*kind)
                .push_bind(aggregate.as_str())
                .push_bind(payload.to_string())
                .push_bind(now);
        }
        tx.execute(q).await?;
    }
    Ok(())
}

/// A subscriber: called once per matching event by the relay. An error leaves the event
/// unpublished, so it is offered again (subscribers must be idempotent).
pub type Subscriber = Arc<dyn Fn(Event) -> BoxFuture<'static, anyhow::Result<()>> + Send + Sync>;

struct Subscription {
    /// An exact type, or a prefix ending in `.*` (`customer.*`), or `*`.
    pattern: String,
    handler: Subscriber,
}

fn registry() -> &'static RwLock<Vec<Subscription>> {
    static REG: OnceLock<RwLock<Vec<Subscription>>> = OnceLock::new();
    REG.get_or_init(|| RwLock::new(Vec::new()))
}

/// Subscribe in-process to events whose type matches `pattern` (`customer.tag.added`,
/// `customer.*`, `*`). Modules subscribe once at startup.
pub fn subscribe(pattern: &str, handler: Subscriber) {
    if let Ok(mut reg) = registry().write() {
        reg.push(Subscription {
            pattern: pattern.to_string(),
            handler,
        });
    }
}

/// Whether an event type matches a subscription pattern.
pub fn matches(pattern: &str, event_type: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => event_type.starts_with(prefix),
        None => pattern == event_type,
    }
}

/// Somewhere events go besides in-process subscribers (RabbitMQ, NATS; webhooks later).
pub trait Sink: Send + Sync {
    /// The sink's name: its cursor row, job key and metrics label (`amqp`, `nats`).
    fn name(&self) -> &'static str;

    /// Publish one event and wait for the broker to confirm it: a batch of one.
    fn publish<'a>(&'a self, event: &'a Event) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(async move {
            match self.publish_batch(std::slice::from_ref(event)).await.error {
                Some(e) => Err(e),
                None => Ok(()),
            }
        })
    }

    /// Publish `events` in order and wait for the broker to confirm them; reports how many from
    /// the front were confirmed, and the error that stopped the rest (brokers keep many in
    /// flight).
    fn publish_batch<'a>(&'a self, events: &'a [Event]) -> BoxFuture<'a, Published>;

    /// After a (re)connect: the id of the last event the broker already holds from us, if it
    /// can tell (NATS can: the stream's last message); the relay then resumes after it.
    fn resume_point(&self) -> BoxFuture<'_, anyhow::Result<Option<String>>> {
        Box::pin(async { Ok(None) })
    }

    /// Drop the connection after a failure, so the next round connects afresh.
    fn reset(&self) -> BoxFuture<'_, ()> {
        Box::pin(async {})
    }
}

/// What [`Sink::publish_batch`] achieved.
#[derive(Debug, Default)]
pub struct Published {
    /// Events confirmed by the broker, counted from the front of the batch.
    pub confirmed: usize,
    /// Why the rest was not.
    pub error: Option<anyhow::Error>,
}

#[derive(sqlx::FromRow)]
struct OutboxRow {
    id: i64,
    tenant_id: i64,
    event_id: String,
    event_type: String,
    aggregate_id: String,
    payload: String,
    created_at: i64,
}

/// Publish up to `limit` pending events in order to the subscribers and `sinks`; returns how many
/// were published. Stops at the first failure so order is kept; the failure is recorded on the
/// row and retried on the next call. Run by one relay at a time (a job with a concurrency key).
pub async fn relay_once(db: &Db, sinks: &[Arc<dyn Sink>], limit: i64) -> anyhow::Result<usize> {
    let rows: Vec<OutboxRow> = db
        .fetch_all(
            query(
                "SELECT id, tenant_id, event_id, event_type, aggregate_id, payload, created_at \
                 FROM event_outbox WHERE published_at IS NULL ORDER BY id LIMIT ?",
            )
            .bind(limit),
        )
        .await?;
    let mut done = 0;
    for row in rows {
        let event = Event {
            seq: row.id,
            event_id: row.event_id,
            event_type: row.event_type,
            tenant_id: row.tenant_id,
            aggregate_id: row.aggregate_id,
            timestamp: iso(row.created_at),
            data: serde_json::from_str(&row.payload).unwrap_or(serde_json::Value::Null),
        };
        if let Err(e) = deliver(&event, sinks).await {
            db.execute(
                query(
                    "UPDATE event_outbox SET attempts = attempts + 1, last_error = ? WHERE id = ?",
                )
                .bind(format!("{e:#}"))
                .bind(row.id),
            )
            .await?;
            return Ok(done);
        }
        db.execute(
            query("UPDATE event_outbox SET published_at = ?, attempts = attempts + 1 WHERE id = ?")
                .bind(now_ms())
                .bind(row.id),
        )
        .await?;
        done += 1;
    }
    Ok(done)
}

async fn deliver(event: &Event, sinks: &[Arc<dyn Sink>]) -> anyhow::Result<()> {
    let handlers: Vec<Subscriber> = registry()
        .read()
        .map(|reg| {
            reg.iter()
                .filter(|s| matches(&s.pattern, &event.event_type))
                .map(|s| s.handler.clone())
                .collect()
        })
        .unwrap_or_default();
    for h in handlers {
        h(event.clone()).await?;
    }
    for sink in sinks {
        sink.publish(event).await?;
    }
    Ok(())
}

/// An event as the API shows it (for the outbox listing and tests).
#[derive(Debug, Serialize, sqlx::FromRow)]
#[serde(rename_all = "camelCase")]
pub struct OutboxEntry {
    pub id: i64,
    pub event_type: String,
    pub aggregate_id: String,
    pub payload: String,
    pub published_at: Option<i64>,
}

/// A tenant's most recent events, newest first.
pub async fn recent(db: &Db, tenant_id: i64, limit: i64) -> DbResult<Vec<OutboxEntry>> {
    db.fetch_all(
        query(
            "SELECT id, event_type, aggregate_id, payload, published_at FROM event_outbox \
             WHERE tenant_id = ? ORDER BY id DESC LIMIT ?",
        )
        .bind(tenant_id)
        .bind(limit),
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::matches;

    #[test]
    fn patterns_match_exact_types_and_prefixes() {
        assert!(matches("customer.created", "customer.created"));
        assert!(!matches("customer.created", "customer.updated"));
        assert!(matches("customer.*", "customer.tag.added"));
        assert!(!matches("customer.*", "group.member.joined"));
        assert!(matches("*", "group.member.joined"));
    }
}

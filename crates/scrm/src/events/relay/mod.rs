//! The event relay to message brokers: RabbitMQ ([`amqp`]) and NATS JetStream ([`nats`]).
//!
//! Each configured broker is a [`Sink`] with its own cursor in `event_relay_cursor` (the last
//! relay sequence the broker confirmed), so a broker that is down holds back only itself: the
//! in-process subscribers ([`super::relay_once`]) and the other broker go on.
//!
//! **Order.** Outbox ids are handed out when a row is inserted, not when its transaction commits,
//! so a cursor over ids could step over a row whose transaction commits late and lose it. The
//! relay therefore gives rows a second number, `relay_seq`, in the order they became visible
//! ([`sequence`]), and sinks follow that. Writes to one aggregate lock it, so its events become
//! visible in id order and keep that order in `relay_seq`.
//!
//! **Once.** A round reads the next batch after the cursor, publishes it in order and waits for
//! the broker's confirmations; the cursor moves only over the confirmed prefix, with a
//! compare-and-set so a relay that lost its job to another worker cannot move it. A crash (or
//! a lost connection) between the broker's confirmation and the cursor's commit publishes the
//! rest again: NATS drops those republishes (`Nats-Msg-Id` = event id, and scrm resumes after
//! the stream's last stored event, see [`nats`]); RabbitMQ delivers them again with the same
//! `message_id` (the event id), which consumers use to drop duplicates.
//!
//! **One publisher.** Each sink's rounds run as one job of the job engine with a fixed unique
//! key (`events.relay.amqp`, `events.relay.nats`): however many workers run, one of them holds
//! the job's lease at a time, and a worker that dies loses it to another after the lease.
//!
//! **Broker down.** A failed round drops the connection and the job reschedules itself with a
//! growing pause (0.5 s doubling to 30 s); the next round reconnects and resumes at the cursor.

pub mod amqp;
pub mod bench;
pub mod nats;

use std::sync::Arc;

use scrm_db::{Db, query};
use serde::Serialize;

use super::{Event, Sink};
use crate::config::EventsConfig;
use crate::state::{iso, now_ms};

/// The sinks the configuration enables, by name.
pub fn configured_sinks(cfg: &EventsConfig) -> Vec<Arc<dyn Sink>> {
    let mut out: Vec<Arc<dyn Sink>> = Vec::new();
    if let Some(a) = &cfg.amqp {
        out.push(Arc::new(amqp::AmqpSink::new(a.clone())));
    }
    if let Some(n) = &cfg.nats {
        out.push(Arc::new(nats::NatsSink::new(n.clone())));
    }
    out
}

/// Names of the sinks the configuration enables (`amqp`, `nats`).
pub fn configured_names(cfg: &EventsConfig) -> Vec<&'static str> {
    let mut out = Vec::new();
    if cfg.amqp.is_some() {
        out.push(amqp::NAME);
    }
    if cfg.nats.is_some() {
        out.push(nats::NAME);
    }
    out
}

/// Give outbox rows without a relay sequence one, in id order, after the highest given.
/// Safe to run concurrently: the unique index on `relay_seq` and the `relay_seq IS NULL` guard
/// make a second sequencer fail instead of renumbering; it then leaves it to the first.
pub async fn sequence(db: &Db, limit: i64) -> anyhow::Result<usize> {
    let mut tx = db.begin().await?;
    let (max,): (i64,) = tx
        .fetch_one(query(
            "SELECT COALESCE(MAX(relay_seq), 0) FROM event_outbox",
        ))
        .await?;
    let ids: Vec<(i64,)> = tx
        .fetch_all(
            query("SELECT id FROM event_outbox WHERE relay_seq IS NULL ORDER BY id LIMIT ?")
                .bind(limit),
        )
        .await?;
    if ids.is_empty() {
        return Ok(0);
    }
    let mut q = query("UPDATE event_outbox SET relay_seq = CASE id");
    for (i, (id,)) in ids.iter().enumerate() {
        q.push_sql(" WHEN ? THEN ?")
            .push_bind(*id)
            .push_bind(max + 1 + i as i64);
    }
    q.push_sql(" END WHERE relay_seq IS NULL AND id IN (");
    for (i, (id,)) in ids.iter().enumerate() {
        if i > 0 {
            q.push_sql(", ");
        }
        q.push_sql("?").push_bind(*id);
    }
    q.push_sql(")");
    let changed = tx.execute(q).await?.rows_affected;
    if changed != ids.len() as u64 {
        // Another sequencer numbered some of them first: leave all of it to that one.
        tx.rollback().await?;
        return Ok(0);
    }
    tx.commit().await?;
    Ok(ids.len())
}

#[derive(sqlx::FromRow)]
struct CursorRow {
    last_seq: i64,
}

async fn cursor(db: &Db, sink: &str) -> anyhow::Result<i64> {
    let found: Option<CursorRow> = db
        .fetch_optional(query("SELECT last_seq FROM event_relay_cursor WHERE sink = ?").bind(sink))
        .await?;
    if let Some(c) = found {
        return Ok(c.last_seq);
    }
    // A new sink starts at the beginning of the outbox. Two relays racing here: one insert wins.
    let _ = db
        .execute(
            query("INSERT INTO event_relay_cursor (sink, last_seq, updated_at) VALUES (?, 0, ?)")
                .bind(sink)
                .bind(now_ms()),
        )
        .await;
    Ok(0)
}

/// Move the cursor from `from` to `to` (compare-and-set); false when another relay moved it.
async fn advance(
    db: &Db,
    sink: &str,
    from: i64,
    to: i64,
    outbox_id: i64,
    count: usize,
) -> anyhow::Result<bool> {
    let n = db
        .execute(
            query(
                "UPDATE event_relay_cursor SET last_seq = ?, last_outbox_id = ?, \
                 published = published + ?, failures = 0, last_error = NULL, updated_at = ? \
                 WHERE sink = ? AND last_seq = ?",
            )
            .bind(to)
            .bind(outbox_id)
            .bind(count as i64)
            .bind(now_ms())
            .bind(sink)
            .bind(from),
        )
        .await?;
    Ok(n.rows_affected == 1)
}

async fn record_failure(db: &Db, sink: &str, error: &anyhow::Error) -> anyhow::Result<()> {
    db.execute(
        query(
            "UPDATE event_relay_cursor SET failures = failures + 1, last_error = ?, updated_at = ? \
             WHERE sink = ?",
        )
        .bind(format!("{error:#}"))
        .bind(now_ms())
        .bind(sink),
    )
    .await?;
    Ok(())
}

#[derive(sqlx::FromRow)]
struct SeqRow {
    relay_seq: Option<i64>,
}

/// One round for one sink: number new rows, catch the cursor up with what the broker already
/// holds, publish the next batch and move the cursor over what the broker confirmed. Returns
/// how many events were published; an error means the broker failed (the confirmed prefix is
/// kept) and the sink has dropped its connection.
pub async fn relay_sink(db: &Db, sink: &dyn Sink, batch: i64) -> anyhow::Result<usize> {
    let name = sink.name();
    if let Err(e) = sequence(db, batch).await {
        // Most likely another sink's relay numbering at the same moment; it will have done it.
        tracing::debug!(sink = name, error = %format!("{e:#}"), "relay sequencing skipped");
    }
    let mut from = cursor(db, name).await?;

    // After a (re)connect the broker may already hold events past our cursor (a crash after its
    // confirmation, before our commit): start after them instead of publishing them again.
    match sink.resume_point().await {
        Ok(Some(event_id)) => {
            let seq: Option<SeqRow> = db
                .fetch_optional(
                    query("SELECT relay_seq FROM event_outbox WHERE event_id = ?").bind(&event_id),
                )
                .await?;
            if let Some(SeqRow {
                relay_seq: Some(seq),
            }) = seq
                && seq > from
            {
                let (id,): (i64,) = db
                    .fetch_one(query("SELECT id FROM event_outbox WHERE relay_seq = ?").bind(seq))
                    .await?;
                let skipped: (i64,) = db
                    .fetch_one(
                        query(
                            "SELECT COUNT(*) FROM event_outbox WHERE relay_seq > ? AND relay_seq <= ?",
                        )
                        .bind(from)
                        .bind(seq),
                    )
                    .await?;
                tracing::info!(
                    sink = name,
                    from,
                    to = seq,
                    "relay cursor caught up with the broker"
                );
                if advance(db, name, from, seq, id, skipped.0 as usize).await? {
                    from = seq;
                } else {
                    sink.reset().await;
                    anyhow::bail!("the {name} relay cursor was moved by another relay");
                }
            }
        }
        Ok(None) => {}
        Err(e) => {
            sink.reset().await;
            record_failure(db, name, &e).await?;
            metrics::counter!("events_relay_failures_total", "sink" => name).increment(1);
            return Err(e);
        }
    }

    let rows: Vec<SinkRow> = db
        .fetch_all(
            query(
                "SELECT id, tenant_id, event_id, event_type, aggregate_id, payload, created_at, relay_seq \
                 FROM event_outbox WHERE relay_seq > ? ORDER BY relay_seq LIMIT ?",
            )
            .bind(from)
            .bind(batch),
        )
        .await?;
    if rows.is_empty() {
        set_lag_gauge(db, name, from).await;
        return Ok(0);
    }
    let seqs: Vec<(i64, i64)> = rows.iter().map(|r| (r.relay_seq, r.id)).collect();
    let events: Vec<Event> = rows.into_iter().map(SinkRow::into_event).collect();
    let outcome = sink.publish_batch(&events).await;
    if outcome.confirmed > 0 {
        let (to, outbox_id) = seqs[outcome.confirmed - 1];
        if !advance(db, name, from, to, outbox_id, outcome.confirmed).await? {
            sink.reset().await;
            anyhow::bail!("the {name} relay cursor was moved by another relay");
        }
        metrics::counter!("events_relay_published_total", "sink" => name)
            .increment(outcome.confirmed as u64);
        from = to;
    }
    if let Some(e) = outcome.error {
        sink.reset().await;
        record_failure(db, name, &e).await?;
        metrics::counter!("events_relay_failures_total", "sink" => name).increment(1);
        return Err(e);
    }
    set_lag_gauge(db, name, from).await;
    Ok(outcome.confirmed)
}

#[derive(sqlx::FromRow)]
struct SinkRow {
    id: i64,
    tenant_id: i64,
    event_id: String,
    event_type: String,
    aggregate_id: String,
    payload: String,
    created_at: i64,
    relay_seq: i64,
}

impl SinkRow {
    fn into_event(self) -> Event {
        Event {
            seq: self.id,
            event_id: self.event_id,
            event_type: self.event_type,
            tenant_id: self.tenant_id,
            aggregate_id: self.aggregate_id,
            timestamp: iso(self.created_at),
            data: serde_json::from_str(&self.payload).unwrap_or(serde_json::Value::Null),
        }
    }
}

/// Events written but not yet confirmed by the sink whose cursor is `last_seq`.
async fn pending(db: &Db, last_seq: i64) -> anyhow::Result<i64> {
    let (after,): (i64,) = db
        .fetch_one(query("SELECT COUNT(*) FROM event_outbox WHERE relay_seq > ?").bind(last_seq))
        .await?;
    let (unnumbered,): (i64,) = db
        .fetch_one(query(
            "SELECT COUNT(*) FROM event_outbox WHERE relay_seq IS NULL",
        ))
        .await?;
    Ok(after + unnumbered)
}

async fn set_lag_gauge(db: &Db, sink: &'static str, last_seq: i64) {
    if let Ok(lag) = pending(db, last_seq).await {
        metrics::gauge!("events_relay_lag", "sink" => sink).set(lag as f64);
    }
}

/// One sink's state, for `/api/jobs/stats` and `/metrics`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SinkStatus {
    pub sink: String,
    /// Events the broker confirmed, since the sink was first enabled.
    pub published: i64,
    /// The last outbox id the broker confirmed (0: none yet).
    pub last_outbox_id: i64,
    /// The newest outbox id.
    pub newest_outbox_id: i64,
    /// Events written but not yet confirmed by the broker.
    pub lag: i64,
    /// Failed rounds in a row (0 when the last round succeeded), and the last failure.
    pub failures: i64,
    pub last_error: Option<String>,
    pub updated_at: Option<i64>,
}

#[derive(sqlx::FromRow)]
struct StatusRow {
    last_seq: i64,
    last_outbox_id: i64,
    published: i64,
    failures: i64,
    last_error: Option<String>,
    updated_at: i64,
}

/// The state of every configured sink (empty when none is).
pub async fn status(db: &Db, cfg: &EventsConfig) -> anyhow::Result<Vec<SinkStatus>> {
    let names = configured_names(cfg);
    if names.is_empty() {
        return Ok(Vec::new());
    }
    let (newest,): (i64,) = db
        .fetch_one(query("SELECT COALESCE(MAX(id), 0) FROM event_outbox"))
        .await?;
    let mut out = Vec::new();
    for name in names {
        let row: Option<StatusRow> = db
            .fetch_optional(
                query(
                    "SELECT last_seq, last_outbox_id, published, failures, last_error, updated_at \
                     FROM event_relay_cursor WHERE sink = ?",
                )
                .bind(name),
            )
            .await?;
        let last_seq = row.as_ref().map_or(0, |r| r.last_seq);
        let lag = pending(db, last_seq).await?;
        metrics::gauge!("events_relay_lag", "sink" => name).set(lag as f64);
        out.push(SinkStatus {
            sink: name.to_string(),
            published: row.as_ref().map_or(0, |r| r.published),
            last_outbox_id: row.as_ref().map_or(0, |r| r.last_outbox_id),
            newest_outbox_id: newest,
            lag,
            failures: row.as_ref().map_or(0, |r| r.failures),
            last_error: row.as_ref().and_then(|r| r.last_error.clone()),
            updated_at: row.as_ref().map(|r| r.updated_at),
        });
    }
    Ok(out)
}

/// Every operation against a broker gives up after this, so a stalled connection fails the
/// round (and is replaced) instead of holding the job.
pub(crate) const BROKER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// What every broker sink's batch does around its own publish/confirm loop: connect on first
/// use (a failure to connect is the batch's error: nothing was published), run `publish` on the
/// live connection, and give the connection to `retire` when the batch ended in an error, so the
/// next batch connects afresh (a half-broken connection is never reused).
pub(crate) async fn publish_connected<L>(
    slot: &tokio::sync::Mutex<Option<L>>,
    connect: impl std::future::Future<Output = anyhow::Result<L>>,
    publish: impl AsyncFnOnce(&mut L) -> super::Published,
    retire: impl FnOnce(L),
) -> super::Published {
    let mut guard = slot.lock().await;
    let live = match &mut *guard {
        Some(live) => live,
        None => match connect.await {
            Ok(live) => guard.insert(live),
            Err(e) => {
                return super::Published {
                    error: Some(e),
                    ..Default::default()
                };
            }
        },
    };
    let out = publish(live).await;
    if out.error.is_some()
        && let Some(live) = guard.take()
    {
        retire(live);
    }
    out
}

/// The pause before the next round after `failures` failed rounds in a row.
pub fn backoff_ms(failures: u32) -> i64 {
    (500i64 << failures.min(6)).min(30_000)
}

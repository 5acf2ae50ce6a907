//! `scrm bench relay`: how fast the relay empties a backlog into each broker. Writes N events
//! to the outbox (over 100 aggregates), then runs relay rounds for one sink at a time until the
//! broker confirmed them all, into a fresh exchange + queue / stream of its own (deleted after),
//! and checks the broker holds N messages.

use std::time::Instant;

use scrm_db::{Db, query};
use serde::Serialize;

use super::{amqp, nats, relay_sink, sequence};
use crate::config::{AmqpSinkConfig, NatsSinkConfig, Secret};
use crate::events::{Sink, emit_many};

pub struct BenchArgs {
    pub database_url: String,
    pub events: usize,
    pub batch: i64,
    pub amqp_url: Option<String>,
    pub nats_url: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct SinkFigures {
    pub sink: &'static str,
    pub events: usize,
    pub seconds: f64,
    pub events_per_sec: f64,
    /// Messages the broker holds afterwards (queue depth / stream messages).
    pub broker_count: u64,
}

pub async fn run(args: BenchArgs) -> anyhow::Result<Vec<SinkFigures>> {
    let db = Db::connect(&args.database_url, &scrm_db::PoolSettings::default()).await?;
    db.migrate().await?;
    let id = uuid::Uuid::new_v4().simple().to_string()[..10].to_string();
    let mut out = Vec::new();
    if let Some(url) = &args.amqp_url {
        let exchange = format!("scrm.bench.{id}");
        let queue = prepare_amqp(url, &exchange).await?;
        let sink = amqp::AmqpSink::new(AmqpSinkConfig {
            url: Secret::new(url.clone()),
            exchange: exchange.clone(),
        });
        let mut f = drain(&db, &sink, args.events, args.batch).await?;
        f.broker_count = finish_amqp(url, &exchange, &queue).await?;
        out.push(f);
    }
    if let Some(url) = &args.nats_url {
        let stream = format!("SCRM_BENCH_{id}");
        let sink = nats::NatsSink::new(NatsSinkConfig {
            url: Secret::new(url.clone()),
            stream: stream.clone(),
            subject: format!("scrm_bench_{id}"),
            duplicate_window: std::time::Duration::from_secs(120),
        });
        let mut f = drain(&db, &sink, args.events, args.batch).await?;
        let js = async_nats::jetstream::new(async_nats::connect(url.as_str()).await?);
        let mut s = js.get_stream(&stream).await?;
        f.broker_count = s.info().await?.state.messages;
        js.delete_stream(&stream).await?;
        out.push(f);
    }
    db.close().await;
    Ok(out)
}

/// Put the sink's cursor at the end of the outbox, write `n` events, time the relay to them.
async fn drain(db: &Db, sink: &dyn Sink, n: usize, batch: i64) -> anyhow::Result<SinkFigures> {
    while sequence(db, 10_000).await? > 0 {}
    let end = db
        .fetch_i64(query(
            "SELECT COALESCE(MAX(relay_seq), 0) FROM event_outbox",
        ))
        .await?;
    db.execute(query("DELETE FROM event_relay_cursor WHERE sink = ?").bind(sink.name()))
        .await?;
    db.execute(
        query("INSERT INTO event_relay_cursor (sink, last_seq, updated_at) VALUES (?, ?, 0)")
            .bind(sink.name())
            .bind(end),
    )
    .await?;
    let mut tx = db.begin().await?;
    let events: Vec<(&str, String, serde_json::Value)> = (0..n)
        .map(|i| {
            (
                crate::events::kind::CUSTOMER_UPDATED,
                format!("bench-{}", i % 100),
                serde_json::json!({"customerId": i % 100, "n": i, "name": "bench customer"}),
            )
        })
        .collect();
    emit_many(&mut tx, 1, &events).await?;
    tx.commit().await?;
    let started = Instant::now();
    let mut done = 0;
    while done < n {
        done += relay_sink(db, sink, batch).await?;
    }
    let seconds = started.elapsed().as_secs_f64();
    Ok(SinkFigures {
        sink: sink.name(),
        events: done,
        seconds,
        events_per_sec: done as f64 / seconds,
        broker_count: 0,
    })
}

async fn prepare_amqp(url: &str, exchange: &str) -> anyhow::Result<String> {
    use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
    use lapin::types::FieldTable;
    let conn = lapin::Connection::connect(url, lapin::ConnectionProperties::default()).await?;
    let ch = conn.create_channel().await?;
    ch.exchange_declare(
        exchange.into(),
        lapin::ExchangeKind::Topic,
        ExchangeDeclareOptions {
            durable: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await?;
    let queue = format!("{exchange}.all");
    ch.queue_declare(
        queue.as_str().into(),
        QueueDeclareOptions {
            durable: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await?;
    ch.queue_bind(
        queue.as_str().into(),
        exchange.into(),
        "#".into(),
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await?;
    let _ = conn.close(200, "ok".into()).await;
    Ok(queue)
}

async fn finish_amqp(url: &str, exchange: &str, queue: &str) -> anyhow::Result<u64> {
    use lapin::options::{ExchangeDeleteOptions, QueueDeclareOptions, QueueDeleteOptions};
    use lapin::types::FieldTable;
    let conn = lapin::Connection::connect(url, lapin::ConnectionProperties::default()).await?;
    let ch = conn.create_channel().await?;
    let q = ch
        .queue_declare(
            queue.into(),
            QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await?;
    let count = u64::from(q.message_count());
    ch.queue_delete(queue.into(), QueueDeleteOptions::default())
        .await?;
    ch.exchange_delete(exchange.into(), ExchangeDeleteOptions::default())
        .await?;
    let _ = conn.close(200, "ok".into()).await;
    Ok(count)
}

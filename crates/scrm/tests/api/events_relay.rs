//! The event relay to the real local brokers (RabbitMQ 127.0.0.1:5672, NATS JetStream
//! 127.0.0.1:4222): every outbox event arrives, in order per aggregate, across a broker outage.
//!
//! The outage is a TCP proxy between scrm and the broker (the shared brokers serve other tests
//! and are never restarted): it cuts every connection mid-stream, refuses new ones while API
//! writes go on, then lets them through again. Every test uses its own exchange / stream names.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use futures::StreamExt;
use parking_lot::Mutex;
use reqwest::Method;
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use crate::customers::{customer, tags};
use crate::helpers::{TestApp, spawn_app_with, until};

const AMQP: &str = "127.0.0.1:5672";
const NATS: &str = "127.0.0.1:4222";

/// A TCP proxy to `upstream` that can cut its connections and refuse new ones.
pub struct Proxy {
    pub port: u16,
    open: Arc<AtomicBool>,
    cut: Arc<Mutex<CancellationToken>>,
    /// Connections let through so far.
    pub accepted: Arc<AtomicUsize>,
    stop: CancellationToken,
}

impl Proxy {
    pub async fn start(upstream: &'static str) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let open = Arc::new(AtomicBool::new(true));
        let cut = Arc::new(Mutex::new(CancellationToken::new()));
        let accepted = Arc::new(AtomicUsize::new(0));
        let stop = CancellationToken::new();
        let (o, c, a, s) = (open.clone(), cut.clone(), accepted.clone(), stop.clone());
        tokio::spawn(async move {
            loop {
                let (mut inbound, _) = tokio::select! {
                    _ = s.cancelled() => return,
                    r = listener.accept() => match r { Ok(x) => x, Err(_) => continue },
                };
                if !o.load(Ordering::SeqCst) {
                    drop(inbound); // refused: closed before a byte is exchanged
                    continue;
                }
                a.fetch_add(1, Ordering::SeqCst);
                let token = c.lock().clone();
                tokio::spawn(async move {
                    let Ok(mut outbound) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    tokio::select! {
                        _ = token.cancelled() => {}
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                    }
                });
            }
        });
        Proxy {
            port,
            open,
            cut,
            accepted,
            stop,
        }
    }

    /// Drop every open connection and refuse new ones until [`Proxy::heal`].
    pub fn break_down(&self) {
        self.open.store(false, Ordering::SeqCst);
        let mut token = self.cut.lock();
        token.cancel();
        *token = CancellationToken::new();
    }

    pub fn heal(&self) {
        self.open.store(true, Ordering::SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.cancel();
        self.cut.lock().cancel();
    }
}

/// One received message: event id, type (routing key / subject suffix), aggregate header.
#[derive(Debug, Clone)]
struct Got {
    event_id: String,
    event_type: String,
    aggregate: String,
}

pub struct AmqpFixture {
    app: TestApp,
    proxy: Proxy,
    exchange: String,
    received: Arc<Mutex<Vec<Got>>>,
    channel: lapin::Channel,
    _consumer: lapin::Connection,
}

pub struct NatsFixture {
    app: TestApp,
    proxy: Proxy,
    stream: String,
    subject: String,
}

fn unique() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..12].to_string()
}

pub async fn spawn_amqp(backend: scrm_db::Backend) -> AmqpFixture {
    use lapin::options::*;
    use lapin::types::{AMQPValue, FieldTable};
    let exchange = format!("scrm.test.{}", unique());
    // The test's own consumer, straight to the broker: a fresh queue bound to everything.
    let conn = lapin::Connection::connect(
        &format!("amqp://guest:guest@{AMQP}/%2f"),
        lapin::ConnectionProperties::default(),
    )
    .await
    .expect("RabbitMQ on 127.0.0.1:5672");
    let ch = conn.create_channel().await.unwrap();
    ch.exchange_declare(
        exchange.as_str().into(),
        lapin::ExchangeKind::Topic,
        // As the relay declares it (a different declaration would be refused).
        ExchangeDeclareOptions {
            durable: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .unwrap();
    let q = ch
        .queue_declare(
            "".into(),
            QueueDeclareOptions {
                exclusive: true,
                auto_delete: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    ch.queue_bind(
        q.name().clone(),
        exchange.as_str().into(),
        "#".into(),
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    let mut consumer = ch
        .basic_consume(
            q.name().clone(),
            "relay-test".into(),
            BasicConsumeOptions {
                no_ack: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    let received = Arc::new(Mutex::new(Vec::new()));
    let sink = received.clone();
    tokio::spawn(async move {
        while let Some(Ok(d)) = consumer.next().await {
            let p = &d.properties;
            let aggregate = p
                .headers()
                .as_ref()
                .and_then(|h| h.inner().get("aggregate").cloned())
                .map(|v| match v {
                    AMQPValue::LongString(s) => s.to_string(),
                    other => format!("{other:?}"),
                })
                .unwrap_or_default();
            sink.lock().push(Got {
                event_id: p
                    .message_id()
                    .as_ref()
                    .map(|s| s.to_string())
                    .unwrap_or_default(),
                event_type: d.routing_key.to_string(),
                aggregate,
            });
        }
    });
    let proxy = Proxy::start(AMQP).await;
    let url = format!("amqp://guest:guest@127.0.0.1:{}/%2f", proxy.port);
    let app = spawn_app_with(
        backend,
        &[
            ("SCRM_EVENTS_AMQP_URL", url.as_str()),
            ("SCRM_EVENTS_AMQP_EXCHANGE", exchange.as_str()),
            ("SCRM_EVENTS_RELAY_BATCH", "20"),
        ],
    )
    .await;
    AmqpFixture {
        app,
        proxy,
        exchange,
        received,
        channel: ch,
        _consumer: conn,
    }
}

pub async fn spawn_nats(backend: scrm_db::Backend) -> NatsFixture {
    let id = unique();
    let stream = format!("SCRM_TEST_{id}");
    let subject = format!("scrm_test_{id}");
    let proxy = Proxy::start(NATS).await;
    let url = format!("nats://127.0.0.1:{}", proxy.port);
    let app = spawn_app_with(
        backend,
        &[
            ("SCRM_EVENTS_NATS_URL", url.as_str()),
            ("SCRM_EVENTS_NATS_STREAM", stream.as_str()),
            ("SCRM_EVENTS_NATS_SUBJECT", subject.as_str()),
            ("SCRM_EVENTS_RELAY_BATCH", "20"),
        ],
    )
    .await;
    NatsFixture {
        app,
        proxy,
        stream,
        subject,
    }
}

/// The sink's entry in `/api/jobs/stats`.
async fn relay_status(app: &TestApp, sink: &str) -> Value {
    let r = app.get("/api/jobs/stats", &app.admin_token).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    r.data()["eventRelay"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["sink"] == sink)
        .cloned()
        .unwrap_or_else(|| panic!("no {sink} in eventRelay: {:?}", r.data()["eventRelay"]))
}

/// Writes through the API that emit events for several customers (aggregates): each round adds
/// a tag to, renames and removes the tag from every customer.
struct Writer {
    customers: Vec<i64>,
    tag: i64,
    round: usize,
}

impl Writer {
    async fn new(app: &TestApp) -> Writer {
        let tag = tags(app, "relay", &["vip"]).await[0];
        let mut customers = Vec::new();
        for i in 0..5 {
            customers.push(customer(app, json!({"name": format!("客户{i}")})).await);
        }
        Writer {
            customers,
            tag,
            round: 0,
        }
    }

    async fn rounds(&mut self, app: &TestApp, n: usize) {
        for _ in 0..n {
            self.round += 1;
            for id in &self.customers {
                let r = app
                    .post(
                        &format!("/api/v1/customers/{id}/tags"),
                        &app.admin_token,
                        json!({"tagIds": [self.tag]}),
                    )
                    .await;
                assert_eq!(r.status, 200, "{:?}", r.body);
                let r = app
                    .put(
                        &format!("/api/v1/customers/{id}"),
                        &app.admin_token,
                        json!({"name": format!("客户{id}-{}", self.round)}),
                    )
                    .await;
                assert_eq!(r.status, 200, "{:?}", r.body);
                let r = app
                    .post(
                        &format!("/api/v1/customers/{id}/tags/remove"),
                        &app.admin_token,
                        json!({"tagIds": [self.tag]}),
                    )
                    .await;
                assert_eq!(r.status, 200, "{:?}", r.body);
            }
        }
    }
}

/// Drive writes across an outage: some before, a cut while the relay is publishing, more while
/// the broker is unreachable, then more after it is back.
async fn writes_across_an_outage(app: &TestApp, proxy: &Proxy, sink: &str) {
    let mut w = Writer::new(app).await;
    w.rounds(app, 2).await;
    until("the relay publishing", || async {
        (relay_status(app, sink).await["published"].as_i64() > Some(0)).then_some(())
    })
    .await;
    w.rounds(app, 1).await;
    proxy.break_down();
    w.rounds(app, 2).await;
    until("the relay noticing the broker is gone", || async {
        (relay_status(app, sink).await["failures"].as_i64() > Some(0)).then_some(())
    })
    .await;
    // The in-process subscribers are not held back by the broker: their relay goes on.
    until(
        "the in-process relay done while the broker is down",
        || async {
            let pending = crate::helpers::n(
                app,
                "SELECT COUNT(*) FROM event_outbox WHERE published_at IS NULL".into(),
            )
            .await;
            (pending == 0).then_some(())
        },
    )
    .await;
    assert!(relay_status(app, sink).await["lag"].as_i64() > Some(0));
    proxy.heal();
    w.rounds(app, 2).await;
}

/// The outbox as written: (event id, type, aggregate) in id order.
async fn outbox(app: &TestApp) -> Vec<(String, String, String)> {
    app.state
        .db
        .fetch_all(scrm_db::query(
            "SELECT event_id, event_type, aggregate_id FROM event_outbox ORDER BY id",
        ))
        .await
        .unwrap()
}

/// Every outbox event was received; per aggregate, the first arrivals are in outbox order.
fn check_complete_and_ordered(outbox: &[(String, String, String)], got: &[Got]) {
    let written: BTreeMap<&str, (&str, &str)> = outbox
        .iter()
        .map(|(id, t, a)| (id.as_str(), (t.as_str(), a.as_str())))
        .collect();
    let mut seen = HashSet::new();
    let mut arrived: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for g in got {
        let (t, a) = written
            .get(g.event_id.as_str())
            .unwrap_or_else(|| panic!("received an event never written: {g:?}"));
        assert_eq!(
            (g.event_type.as_str(), g.aggregate.as_str()),
            (*t, *a),
            "{g:?}"
        );
        if seen.insert(g.event_id.clone()) {
            arrived
                .entry(g.aggregate.clone())
                .or_default()
                .push(g.event_id.clone());
        }
    }
    let missing: Vec<_> = outbox
        .iter()
        .filter(|(id, ..)| !seen.contains(id))
        .collect();
    assert!(missing.is_empty(), "never received: {missing:?}");
    let mut expected: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (id, _, a) in outbox {
        expected.entry(a.clone()).or_default().push(id.clone());
    }
    assert!(
        expected.len() >= 5,
        "several aggregates: {:?}",
        expected.keys()
    );
    assert_eq!(arrived, expected, "per-aggregate order");
}

async fn metrics_show(app: &TestApp, sink: &str) {
    let r = app
        .client
        .get(format!("{}/metrics", app.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        r.contains(&format!("events_relay_lag{{sink=\"{sink}\"}} 0")),
        "lag on /metrics: {r}"
    );
    assert!(
        r.contains(&format!("events_relay_published_total{{sink=\"{sink}\"}}")),
        "published on /metrics"
    );
}

async fn rabbitmq_gets_every_event_in_order_across_an_outage(f: AmqpFixture) {
    let app = &f.app;
    writes_across_an_outage(app, &f.proxy, "amqp").await;
    let written = outbox(app).await;
    until("every event at RabbitMQ", || async {
        let ids: HashSet<String> = f
            .received
            .lock()
            .iter()
            .map(|g| g.event_id.clone())
            .collect();
        written
            .iter()
            .all(|(id, ..)| ids.contains(id))
            .then_some(())
    })
    .await;
    let got = f.received.lock().clone();
    // At least once: a republish after the cut is possible, always with the same message_id.
    check_complete_and_ordered(&written, &got);
    // The consumer can see a message before the relay commits its cursor: wait for that.
    let s = until("the amqp cursor caught up", || async {
        let s = relay_status(app, "amqp").await;
        (s["lag"] == 0).then_some(s)
    })
    .await;
    assert_eq!(s["failures"], 0, "{s}");
    assert!(s["lastError"].is_null(), "{s}");
    assert_eq!(s["published"].as_i64(), Some(written.len() as i64), "{s}");
    assert!(
        f.proxy.accepted.load(Ordering::SeqCst) >= 2,
        "the relay reconnected"
    );
    metrics_show(app, "amqp").await;
    let _ = f
        .channel
        .exchange_delete(
            f.exchange.as_str().into(),
            lapin::options::ExchangeDeleteOptions::default(),
        )
        .await;
}

async fn nats_stores_every_event_once_in_order_across_an_outage(f: NatsFixture) {
    let app = &f.app;
    writes_across_an_outage(app, &f.proxy, "nats").await;
    let written = outbox(app).await;
    until("the relay caught up", || async {
        (relay_status(app, "nats").await["lag"] == 0).then_some(())
    })
    .await;
    // Read the whole stream straight from the server.
    let client = async_nats::connect(NATS)
        .await
        .expect("NATS on 127.0.0.1:4222");
    let js = async_nats::jetstream::new(client);
    let mut stream = js.get_stream(&f.stream).await.unwrap();
    let last = stream.info().await.unwrap().state.last_sequence;
    let mut got = Vec::new();
    for seq in 1..=last {
        let m = stream.get_raw_message(seq).await.unwrap();
        let h = |k: &str| {
            m.headers
                .get(k)
                .map(|v| v.as_str().to_string())
                .unwrap_or_default()
        };
        let subject = m.subject.to_string();
        got.push(Got {
            event_id: h("Nats-Msg-Id"),
            event_type: subject
                .strip_prefix(&format!("{}.", f.subject))
                .unwrap_or(&subject)
                .to_string(),
            aggregate: h("Scrm-Aggregate"),
        });
    }
    // Exactly once: the stream holds each event one time.
    let ids: HashSet<&str> = got.iter().map(|g| g.event_id.as_str()).collect();
    assert_eq!(ids.len(), got.len(), "duplicates in the stream");
    assert_eq!(got.len(), written.len());
    check_complete_and_ordered(&written, &got);
    let s = relay_status(app, "nats").await;
    assert_eq!(s["published"].as_i64(), Some(written.len() as i64), "{s}");
    assert!(s["lastError"].is_null(), "{s}");
    assert!(
        f.proxy.accepted.load(Ordering::SeqCst) >= 2,
        "the relay reconnected"
    );
    metrics_show(app, "nats").await;
    let _ = js.delete_stream(&f.stream).await;
}

/// Without broker configuration nothing about the relay shows or runs.
async fn without_brokers_the_relay_is_off(app: TestApp) {
    let r = app
        .call(Method::GET, "/api/jobs/stats", Some(&app.admin_token), None)
        .await;
    assert_eq!(r.data()["eventRelay"], json!([]));
}

scrm_db::db_tests!(crate::events_relay::spawn_amqp; rabbitmq_gets_every_event_in_order_across_an_outage);
scrm_db::db_tests!(crate::events_relay::spawn_nats; nats_stores_every_event_once_in_order_across_an_outage);
scrm_db::db_tests!(crate::helpers::spawn_app; without_brokers_the_relay_is_off);

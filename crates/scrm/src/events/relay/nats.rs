//! NATS JetStream: subject `<prefix>.<event type>` (`scrm.events.customer.created`) in a
//! stream scrm creates if missing (`SCRM_EVENTS` capturing `<prefix>.>`, file storage, a
//! deduplication window of `SCRM_EVENTS_NATS_DUPLICATE_WINDOW_SECS`).
//!
//! Exactly once, in order, as far as the server can enforce it:
//! - `Nats-Msg-Id` = event id: the server drops a republish within the duplicate window;
//! - after every (re)connect the relay reads the stream's last message and resumes after the
//!   event it names ([`Sink::resume_point`]), so even a republish older than the window is not
//!   sent;
//! - every message but the first after a connect carries `Nats-Expected-Last-Msg-Id` = the
//!   previous event's id (acknowledged on this connection or sent just before it): if an earlier message of the batch was lost with a broken connection
//!   while the client sent the next one on a new connection, the server refuses the later one
//!   instead of storing it out of order. The stream must therefore be scrm's alone.

use std::sync::Arc;

use async_nats::HeaderMap;
use async_nats::jetstream::{self, stream};
use futures::future::BoxFuture;
use tokio::sync::Mutex;
use tokio::time::timeout;

use super::BROKER_TIMEOUT;
use crate::config::NatsSinkConfig;
use crate::events::{Event, Published, Sink};

pub const NAME: &str = "nats";

struct Live {
    js: jetstream::Context,
    /// The last event this connection published and the server acknowledged: the next
    /// message's expected last. None right after connecting (the first message goes without).
    last_id: Option<String>,
    /// The event id of the stream's last message when we connected, until the relay asks.
    resume: Option<Option<String>>,
}

pub struct NatsSink {
    config: NatsSinkConfig,
    live: Arc<Mutex<Option<Live>>>,
}

impl NatsSink {
    pub fn new(config: NatsSinkConfig) -> Self {
        NatsSink {
            config,
            live: Arc::new(Mutex::new(None)),
        }
    }

    async fn connect(&self) -> anyhow::Result<Live> {
        let client = async_nats::ConnectOptions::new()
            .connection_timeout(BROKER_TIMEOUT)
            .ignore_discovered_servers()
            .name("scrm events relay")
            .connect(self.config.url.expose())
            .await?;
        let mut js = jetstream::new(client);
        js.set_timeout(BROKER_TIMEOUT);
        let mut stream = timeout(
            BROKER_TIMEOUT,
            js.get_or_create_stream(stream::Config {
                name: self.config.stream.clone(),
                subjects: vec![format!("{}.>", self.config.subject)],
                storage: stream::StorageType::File,
                duplicate_window: self.config.duplicate_window,
                ..Default::default()
            }),
        )
        .await
        .map_err(|_| anyhow::anyhow!("NATS stream setup timed out"))?
        .map_err(|e| anyhow::anyhow!("NATS stream {}: {e}", self.config.stream))?;
        let last_seq = stream
            .info()
            .await
            .map_err(|e| anyhow::anyhow!("NATS stream info: {e}"))?
            .state
            .last_sequence;
        let last_id = if last_seq == 0 {
            None
        } else {
            match stream.get_raw_message(last_seq).await {
                Ok(m) => m.headers.get("Nats-Msg-Id").map(|v| v.as_str().to_string()),
                // Removed by a limit or by hand: nothing to resume after.
                Err(e) => {
                    tracing::warn!(error = %e, "NATS: the stream's last message is unreadable");
                    None
                }
            }
        };
        tracing::info!(stream = %self.config.stream, last_seq, "events relay connected to NATS");
        Ok(Live {
            js,
            last_id: None,
            resume: Some(last_id),
        })
    }

    async fn publish_all(&self, events: &[Event]) -> Published {
        super::publish_connected(
            &self.live,
            self.connect(),
            async |live: &mut Live| self.publish_on(live, events).await,
            drop,
        )
        .await
    }

    /// One batch on a live connection: every event in flight at once (each expecting the one
    /// before it), then the acknowledgements in order.
    async fn publish_on(&self, live: &mut Live, events: &[Event]) -> Published {
        let mut out = Published::default();
        let mut acks = Vec::with_capacity(events.len());
        let mut expected = live.last_id.clone();
        for e in events {
            let body = match serde_json::to_vec(e) {
                Ok(b) => b,
                Err(err) => {
                    out.error = Some(err.into());
                    break;
                }
            };
            let mut headers = HeaderMap::new();
            headers.insert("Nats-Msg-Id", e.event_id.as_str());
            if let Some(prev) = &expected {
                headers.insert("Nats-Expected-Last-Msg-Id", prev.as_str());
            }
            headers.insert("Scrm-Tenant", e.tenant_id.to_string().as_str());
            headers.insert("Scrm-Aggregate", e.aggregate_id.as_str());
            headers.insert("Scrm-Event-Type", e.event_type.as_str());
            let subject = format!("{}.{}", self.config.subject, e.event_type);
            match timeout(
                BROKER_TIMEOUT,
                live.js.publish_with_headers(subject, headers, body.into()),
            )
            .await
            {
                Ok(Ok(ack)) => acks.push(ack),
                Ok(Err(err)) => {
                    out.error = Some(anyhow::anyhow!("NATS publish: {err}"));
                    break;
                }
                Err(_) => {
                    out.error = Some(anyhow::anyhow!("NATS publish timed out"));
                    break;
                }
            }
            expected = Some(e.event_id.clone());
        }
        for (ack, e) in acks.into_iter().zip(events) {
            // The ack future has its own timeout (the context's).
            match ack.await {
                Ok(_) => {
                    out.confirmed += 1;
                    live.last_id = Some(e.event_id.clone());
                }
                Err(err) => {
                    out.error = Some(anyhow::anyhow!("NATS ack: {err}"));
                    break;
                }
            }
        }
        out
    }
}

impl Sink for NatsSink {
    fn name(&self) -> &'static str {
        NAME
    }

    fn publish_batch<'a>(&'a self, events: &'a [Event]) -> BoxFuture<'a, Published> {
        Box::pin(self.publish_all(events))
    }

    fn resume_point(&self) -> BoxFuture<'_, anyhow::Result<Option<String>>> {
        Box::pin(async move {
            let mut guard = self.live.lock().await;
            if guard.is_none() {
                *guard = Some(self.connect().await?);
            }
            Ok(guard.as_mut().and_then(|live| live.resume.take()).flatten())
        })
    }

    fn reset(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            *self.live.lock().await = None;
        })
    }
}

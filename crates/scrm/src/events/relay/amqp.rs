//! RabbitMQ: a durable topic exchange (`scrm.events` by default), routing key = event type,
//! persistent messages with `message_id` = event id and headers `tenant` and `aggregate`, sent
//! with publisher confirms. A republish (after a crash between the broker's confirmation and
//! the cursor's commit, or a connection lost before the confirmation arrived) carries the same
//! `message_id`: consumers drop duplicates by it. That is the guarantee: at least once, in
//! order per aggregate, duplicates recognisable.

use futures::future::BoxFuture;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions, ExchangeDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind};
use tokio::sync::Mutex;
use tokio::time::timeout;

use super::BROKER_TIMEOUT;
use crate::config::AmqpSinkConfig;
use crate::events::{Event, Published, Sink};

pub const NAME: &str = "amqp";

struct Live {
    connection: Connection,
    channel: Channel,
}

pub struct AmqpSink {
    config: AmqpSinkConfig,
    live: Mutex<Option<Live>>,
}

impl AmqpSink {
    pub fn new(config: AmqpSinkConfig) -> Self {
        AmqpSink {
            config,
            live: Mutex::new(None),
        }
    }

    async fn connect(&self) -> anyhow::Result<Live> {
        let props =
            ConnectionProperties::default().with_connection_name("scrm events relay".into());
        let connection = timeout(
            BROKER_TIMEOUT,
            Connection::connect(self.config.url.expose(), props),
        )
        .await
        .map_err(|_| anyhow::anyhow!("RabbitMQ connect timed out"))??;
        let channel = timeout(BROKER_TIMEOUT, async {
            let channel = connection.create_channel().await?;
            channel
                .confirm_select(ConfirmSelectOptions::default())
                .await?;
            channel
                .exchange_declare(
                    self.config.exchange.as_str().into(),
                    ExchangeKind::Topic,
                    ExchangeDeclareOptions {
                        durable: true,
                        ..Default::default()
                    },
                    FieldTable::default(),
                )
                .await?;
            Ok::<_, lapin::Error>(channel)
        })
        .await
        .map_err(|_| anyhow::anyhow!("RabbitMQ channel setup timed out"))??;
        tracing::info!(exchange = %self.config.exchange, "events relay connected to RabbitMQ");
        Ok(Live {
            connection,
            channel,
        })
    }

    async fn publish_all(&self, events: &[Event]) -> Published {
        super::publish_connected(
            &self.live,
            self.connect(),
            async |live: &mut Live| self.publish_on(live, events).await,
            close,
        )
        .await
    }

    /// One batch on a live connection: every event in flight at once, then the confirmations.
    async fn publish_on(&self, live: &Live, events: &[Event]) -> Published {
        let mut out = Published::default();
        // Everything in flight at once, in order on one channel; then the confirmations in order.
        let mut confirms = Vec::with_capacity(events.len());
        for e in events {
            let body = match serde_json::to_vec(e) {
                Ok(b) => b,
                Err(err) => {
                    out.error = Some(err.into());
                    break;
                }
            };
            let mut headers = FieldTable::default();
            headers.insert("tenant".into(), AMQPValue::LongLongInt(e.tenant_id));
            headers.insert(
                "aggregate".into(),
                AMQPValue::LongString(LongString::from(e.aggregate_id.as_str())),
            );
            let props = BasicProperties::default()
                .with_message_id(ShortString::from(e.event_id.as_str()))
                .with_type(ShortString::from(e.event_type.as_str()))
                .with_content_type("application/json".into())
                .with_app_id("scrm".into())
                .with_delivery_mode(2)
                .with_headers(headers);
            let sent = timeout(
                BROKER_TIMEOUT,
                live.channel.basic_publish(
                    self.config.exchange.as_str().into(),
                    e.event_type.as_str().into(),
                    BasicPublishOptions::default(),
                    &body,
                    props,
                ),
            )
            .await;
            match sent {
                Ok(Ok(confirm)) => confirms.push(confirm),
                Ok(Err(err)) => {
                    out.error = Some(anyhow::anyhow!("RabbitMQ publish: {err}"));
                    break;
                }
                Err(_) => {
                    out.error = Some(anyhow::anyhow!("RabbitMQ publish timed out"));
                    break;
                }
            }
        }
        for confirm in confirms {
            match timeout(BROKER_TIMEOUT, confirm).await {
                Ok(Ok(c)) if c.is_ack() => out.confirmed += 1,
                Ok(Ok(_)) => {
                    out.error = Some(anyhow::anyhow!("RabbitMQ refused (nack) an event"));
                    break;
                }
                Ok(Err(err)) => {
                    out.error = Some(anyhow::anyhow!("RabbitMQ confirm: {err}"));
                    break;
                }
                Err(_) => {
                    out.error = Some(anyhow::anyhow!("RabbitMQ confirm timed out"));
                    break;
                }
            }
        }
        out
    }
}

/// Close a connection in the background: a dead one may never answer.
fn close(live: Live) {
    tokio::spawn(async move {
        let _ = timeout(
            std::time::Duration::from_secs(2),
            live.connection.close(200, "events relay reconnects".into()),
        )
        .await;
    });
}

impl Sink for AmqpSink {
    fn name(&self) -> &'static str {
        NAME
    }

    fn publish_batch<'a>(&'a self, events: &'a [Event]) -> BoxFuture<'a, Published> {
        Box::pin(self.publish_all(events))
    }

    fn reset(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            if let Some(live) = self.live.lock().await.take() {
                close(live);
            }
        })
    }
}

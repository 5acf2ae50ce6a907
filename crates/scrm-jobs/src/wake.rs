//! Wake-ups: how an idle engine learns that work arrived without polling the database in a
//! tight loop. In-process, a [`tokio::sync::Notify`] per engine; across processes,
//! PostgreSQL `LISTEN/NOTIFY` on the channel [`CHANNEL`] (sent inside the enqueuing transaction,
//! so it is delivered exactly when the job becomes visible) and, with the `redis` feature and a
//! Redis URL, a pub/sub channel of the same name. Polling (the engine's `poll_interval`) stays as
//! the fallback for anything these miss.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// The NOTIFY / pub-sub channel name.
pub const CHANNEL: &str = "scrm_jobs";

/// The engines of this process that want to hear about new work.
#[derive(Debug, Default)]
pub(crate) struct WakeHub {
    engines: Mutex<Vec<Weak<Notify>>>,
    recheck_pending: Arc<AtomicBool>,
}

impl WakeHub {
    pub(crate) fn register(&self, n: &Arc<Notify>) {
        if let Ok(mut v) = self.engines.lock() {
            v.retain(|w| w.strong_count() > 0);
            v.push(Arc::downgrade(n));
        }
    }

    /// Wake every local engine now (the work is already committed).
    pub(crate) fn wake(&self) {
        if let Ok(v) = self.engines.lock() {
            for n in v.iter().filter_map(Weak::upgrade) {
                n.notify_one();
            }
        }
    }

    /// Wake now and again shortly: the job was written in a caller's transaction that has not
    /// committed yet, so the first look may not see it. One re-check task at a time, however
    /// many enqueues, so a loop of 100,000 enqueues spawns next to nothing.
    pub(crate) fn wake_soon(self: &Arc<Self>) {
        self.wake();
        if self.recheck_pending.swap(true, Ordering::AcqRel) {
            return;
        }
        let hub = Arc::downgrade(self);
        let pending = self.recheck_pending.clone();
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                for ms in [5, 25, 100, 400] {
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                    match hub.upgrade() {
                        Some(h) => h.wake(),
                        None => break,
                    }
                }
                pending.store(false, Ordering::Release);
            });
        } else {
            pending.store(false, Ordering::Release);
        }
    }
}

/// Listen for PostgreSQL notifications and wake local engines until `stop`.
pub(crate) async fn listen_postgres(
    pool: sqlx::PgPool,
    hub: Arc<WakeHub>,
    stop: CancellationToken,
    ready: Arc<AtomicBool>,
) {
    while !stop.is_cancelled() {
        ready.store(false, Ordering::Release);
        let mut listener = match sqlx::postgres::PgListener::connect_with(&pool).await {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(error = %e, "jobs: LISTEN connection failed; polling meanwhile");
                pause(&stop, Duration::from_secs(2)).await;
                continue;
            }
        };
        if let Err(e) = listener.listen(CHANNEL).await {
            tracing::warn!(error = %e, "jobs: LISTEN failed");
            pause(&stop, Duration::from_secs(2)).await;
            continue;
        }
        ready.store(true, Ordering::Release);
        // Jobs may have arrived before we listened.
        hub.wake();
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                msg = listener.recv() => match msg {
                    Ok(_) => hub.wake(),
                    Err(e) => {
                        tracing::warn!(error = %e, "jobs: LISTEN connection lost");
                        // Jobs may have arrived while we were deaf.
                        hub.wake();
                        break;
                    }
                }
            }
        }
    }
}

#[cfg(feature = "redis")]
pub(crate) async fn listen_redis(
    url: String,
    hub: Arc<WakeHub>,
    stop: CancellationToken,
    ready: Arc<AtomicBool>,
) {
    use futures::StreamExt;
    while !stop.is_cancelled() {
        ready.store(false, Ordering::Release);
        let client = match redis::Client::open(url.as_str()) {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "jobs: bad Redis URL; wake-ups over Redis off");
                return;
            }
        };
        let mut pubsub = match client.get_async_pubsub().await {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(error = %e, "jobs: Redis connection failed");
                pause(&stop, Duration::from_secs(2)).await;
                continue;
            }
        };
        if let Err(e) = pubsub.subscribe(CHANNEL).await {
            tracing::warn!(error = %e, "jobs: Redis SUBSCRIBE failed");
            pause(&stop, Duration::from_secs(2)).await;
            continue;
        }
        ready.store(true, Ordering::Release);
        // Jobs may have arrived before we subscribed.
        hub.wake();
        let mut stream = pubsub.on_message();
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                m = stream.next() => match m {
                    Some(_) => hub.wake(),
                    None => { hub.wake(); break; }
                }
            }
        }
    }
}

#[cfg(feature = "redis")]
pub(crate) async fn publish_redis(url: &str) {
    use redis::AsyncCommands;
    let Ok(client) = redis::Client::open(url) else {
        return;
    };
    if let Ok(mut conn) = client.get_multiplexed_async_connection().await {
        let _: Result<i64, _> = conn.publish(CHANNEL, "").await;
    }
}

async fn pause(stop: &CancellationToken, d: Duration) {
    tokio::select! {
        _ = stop.cancelled() => {}
        _ = tokio::time::sleep(d) => {}
    }
}

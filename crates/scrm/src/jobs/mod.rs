//! scrm on the job engine: which handlers the workers run, starting and draining them with the
//! process, and the monitoring and control API (seed 002's queue metrics, dead letters, replay).
//!
//! Domain modules own their job kinds: each exposes `register(builder, state) -> builder`, and
//! [`engine`] chains them, so a new kind is registered next to the code that enqueues it.

pub mod alerts;
pub(crate) mod routes;

use std::sync::Arc;
use std::time::Duration;

use scrm_jobs::engine::EngineBuilder;
use scrm_jobs::worker::JobContext;
use scrm_jobs::{
    EngineConfig, EngineHandle, JobEngine, JobError, JobOutcome, Jobs, JobsOptions, KindOptions,
    NewJob, SystemClock,
};
use tokio_util::sync::CancellationToken;

pub use routes::routes;

use crate::state::AppState;

/// The client handle every module enqueues through.
pub fn client(db: &scrm_db::Db, redis_url: Option<&str>) -> Jobs {
    let opts = JobsOptions {
        redis_url: redis_url.map(str::to_string),
        ..Default::default()
    };
    Jobs::with_options(db.clone(), Arc::new(SystemClock), opts)
}

/// The engine with every module's handlers.
pub fn engine(state: &AppState, config: EngineConfig) -> JobEngine {
    let mut builder = JobEngine::builder(state.jobs.clone()).config(config);
    for sink in alerts::sinks(state) {
        builder = builder.alert_sink(sink);
    }
    let builder = register_events_relay(builder, state);
    let builder = register_broker_relays(builder, state);
    let builder = crate::integration::jobs::register(builder, state);
    let builder = crate::operation::jobs::register(builder, state);
    let builder = crate::customers::jobs::register(builder, state);
    let builder = crate::automation::jobs::register(builder, state);
    let builder = crate::devices::jobs::register(builder, state);
    builder.build()
}

/// Start this process's workers; they stop claiming when `shutdown` is cancelled and finish
/// what they hold (see [`EngineHandle::wait`]).
pub async fn start_workers(
    state: &AppState,
    shutdown: CancellationToken,
) -> anyhow::Result<EngineHandle> {
    let config = EngineConfig {
        concurrency: state.config.worker_concurrency,
        lease: state.config.job_lease,
        heartbeat: state.config.job_lease / 3,
        maintenance_interval: (state.config.job_lease / 3).min(Duration::from_secs(5)),
        ..Default::default()
    };
    let handle = engine(state, config).start(shutdown).await?;
    ensure_events_relay(state).await?;
    tracing::info!(worker = handle.worker_id(), "job workers started");
    Ok(handle)
}

/// The job that relays the domain-events outbox to in-process subscribers (SOP triggers,
/// workflows) and external sinks, in order. One job with a fixed unique key reschedules itself,
/// so however many workers run, one relay runs at a time.
pub const EVENTS_RELAY: &str = "events.relay";

/// Events published per relay run; a full batch runs again at once, otherwise after a second.
const RELAY_BATCH: i64 = 500;

fn register_events_relay(builder: EngineBuilder, state: &AppState) -> EngineBuilder {
    let db = state.db.clone();
    builder.register(
        EVENTS_RELAY,
        KindOptions::default(),
        move |ctx: JobContext, _payload: serde_json::Value| {
            let db = db.clone();
            async move {
                let published = crate::events::relay_once(&db, &[], RELAY_BATCH)
                    .await
                    .map_err(JobError::retryable)?;
                let pause = if published as i64 >= RELAY_BATCH {
                    0
                } else {
                    1_000
                };
                Ok(JobOutcome::Reschedule {
                    at: ctx.now_ms() + pause,
                    payload: serde_json::json!({}),
                })
            }
        },
    )
}

/// The job kind (and unique key) relaying to one broker: `events.relay.amqp`,
/// `events.relay.nats`.
pub fn broker_relay_kind(sink: &str) -> String {
    format!("{EVENTS_RELAY}.{sink}")
}

/// One job per configured broker (events/relay): its own cursor, so a broker that is down holds
/// back neither the in-process subscribers nor the other broker. The unique key makes it one
/// publisher per broker however many workers run; a failed round reschedules itself with a
/// growing pause (payload `failures`) and the next one reconnects.
fn register_broker_relays(mut builder: EngineBuilder, state: &AppState) -> EngineBuilder {
    let batch = state.config.events.batch;
    for sink in crate::events::relay::configured_sinks(&state.config.events) {
        let db = state.db.clone();
        let kind = broker_relay_kind(sink.name());
        builder = builder.register(
            &kind,
            KindOptions::default(),
            move |ctx: JobContext, payload: serde_json::Value| {
                let db = db.clone();
                let sink = sink.clone();
                async move {
                    let failures = payload["failures"].as_u64().unwrap_or(0) as u32;
                    let (pause, failures) =
                        match crate::events::relay::relay_sink(&db, sink.as_ref(), batch).await {
                            Ok(n) if n as i64 >= batch => (0, 0),
                            Ok(_) => (500, 0),
                            Err(e) => {
                                tracing::warn!(sink = sink.name(), failures = failures + 1, error = %format!("{e:#}"), "events relay to broker failed; will reconnect");
                                (crate::events::relay::backoff_ms(failures), failures + 1)
                            }
                        };
                    Ok(JobOutcome::Reschedule {
                        at: ctx.now_ms() + pause,
                        payload: serde_json::json!({ "failures": failures }),
                    })
                }
            },
        );
    }
    builder
}

/// Make sure the relay jobs exist (idempotent: their unique keys), and revive them if they died.
pub async fn ensure_events_relay(state: &AppState) -> anyhow::Result<()> {
    let mut kinds = vec![EVENTS_RELAY.to_string()];
    kinds.extend(
        crate::events::relay::configured_names(&state.config.events)
            .into_iter()
            .map(broker_relay_kind),
    );
    for kind in kinds {
        let job = NewJob::new(&kind, &serde_json::json!({}))?.unique_key(&kind);
        state.jobs.enqueue_now(job).await?;
        let dead = scrm_jobs::JobFilter {
            state: Some(scrm_jobs::JobState::Dead),
            kind: Some(kind.clone()),
            ..Default::default()
        };
        state
            .jobs
            .replay(scrm_jobs::Scope::System, &scrm_jobs::Target::Filter(dead))
            .await?;
    }
    Ok(())
}

//! scrm on the job engine: which handlers the workers run, starting and draining them with the
//! process, and the monitoring and control API (seed 002's queue metrics, dead letters, replay).
//!
//! Domain modules own their job kinds: each exposes `register(builder, state) -> builder`, and
//! [`engine`] chains them, so a new kind is registered next to the code that enqueues it.

mod routes;

use std::sync::Arc;

use scrm_jobs::{EngineConfig, EngineHandle, JobEngine, Jobs, JobsOptions, SystemClock};
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
    let builder = JobEngine::builder(state.jobs.clone()).config(config);
    // Each domain module adds its kinds here, e.g. `let builder = crate::customers::jobs::register(builder, state);`
    let builder = crate::integration::jobs::register(builder, state);
    let builder = crate::operation::jobs::register(builder, state);
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
        ..Default::default()
    };
    let handle = engine(state, config).start(shutdown).await?;
    tracing::info!(worker = handle.worker_id(), "job workers started");
    Ok(handle)
}

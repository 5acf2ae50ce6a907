//! What every handler and job shares: the database, the configuration, Redis when configured,
//! the metrics registry and the clock.

use std::sync::Arc;

use metrics_exporter_prometheus::PrometheusHandle;
use scrm_db::Db;

use crate::config::Config;

/// Shared application state. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub db: Db,
    pub config: Arc<Config>,
    /// Redis for state shared across processes (token cache, limits, wake-ups); optional.
    pub redis: Option<redis::aio::ConnectionManager>,
    /// Renders `/metrics`.
    pub metrics: PrometheusHandle,
    /// The job engine's client: enqueue in a transaction, query, control.
    pub jobs: scrm_jobs::Jobs,
    /// Wakes this process's device gateway sessions when commands are released.
    pub devices: crate::devices::Hub,
}

/// Milliseconds since the Unix epoch: the one clock application code reads, so the unit of
/// every stored time is the same everywhere.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// An epoch-milliseconds time as ISO 8601 (UTC), the way the seeds show times.
pub fn iso(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// An optional epoch-milliseconds time as ISO 8601.
pub fn iso_opt(ms: Option<i64>) -> Option<String> {
    ms.map(iso)
}

//! What a handler sees and what a worker is: the [`Handler`] signature, the [`JobContext`] a
//! run gets (ids, attempt, cooperative cancellation), and the `job_worker` table each engine
//! registers in and heartbeats (host, pid, status, running jobs, memory).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use scrm_db::{Db, DbResult, query};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::error::JobError;
use crate::job::{JobId, JobOutcome};
use crate::queue::Jobs;

/// The future a handler returns.
pub type HandlerFuture = Pin<Box<dyn Future<Output = Result<JobOutcome, JobError>> + Send>>;

/// The code that runs jobs of one kind. Any
/// `Fn(JobContext, serde_json::Value) -> impl Future<Output = Result<JobOutcome, JobError>>`
/// is a handler; implement the trait by hand for a struct holding its dependencies.
pub trait Handler: Send + Sync + 'static {
    /// Run one job.
    fn call(&self, ctx: JobContext, payload: serde_json::Value) -> HandlerFuture;
}

impl<F, Fut> Handler for F
where
    F: Fn(JobContext, serde_json::Value) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<JobOutcome, JobError>> + Send + 'static,
{
    fn call(&self, ctx: JobContext, payload: serde_json::Value) -> HandlerFuture {
        Box::pin(self(ctx, payload))
    }
}

/// Everything a run knows about its job, and its cancellation signal.
#[derive(Clone, Debug)]
pub struct JobContext {
    /// The job's id.
    pub id: JobId,
    /// The job's kind.
    pub kind: String,
    /// This attempt (1 for the first run).
    pub attempt: i64,
    /// Attempts allowed before the job goes dead.
    pub max_attempts: i64,
    /// The owning tenant (None for system jobs).
    pub tenant_id: Option<i64>,
    /// The job's group, if any.
    pub group_key: Option<String>,
    /// When the job was due (epoch ms); for a cron job, its tick.
    pub run_at: i64,
    /// The worker running it.
    pub worker_id: Arc<str>,
    pub(crate) cancel: CancellationToken,
    pub(crate) jobs: Jobs,
}

impl JobContext {
    /// True once the job was cancelled (seen at the worker's heartbeat), its lease was lost, or
    /// it ran past its timeout. Check it between steps and stop early.
    pub fn is_cancelled(&self) -> bool {
        self.cancel.is_cancelled()
    }

    /// Completes when [`JobContext::is_cancelled`] becomes true (for `select!`).
    pub async fn cancelled(&self) {
        self.cancel.cancelled().await
    }

    /// True on the last attempt (a handler may then give up differently).
    pub fn is_last_attempt(&self) -> bool {
        self.attempt >= self.max_attempts
    }

    /// The job client, to enqueue follow-up jobs.
    pub fn jobs(&self) -> &Jobs {
        &self.jobs
    }

    /// Epoch ms now, by the engine's clock.
    pub fn now_ms(&self) -> i64 {
        self.jobs.now_ms()
    }
}

/// A worker as listed by the API (seed 002's `worker_status`).
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
#[serde(rename_all = "camelCase")]
pub struct WorkerInfo {
    /// Unique per engine start: `host-pid-random`.
    pub id: String,
    /// Host name.
    pub host: String,
    /// Process id.
    pub pid: i64,
    /// When the engine started (epoch ms).
    pub started_at: i64,
    /// Last heartbeat (epoch ms).
    pub last_seen_at: i64,
    /// `running`, `draining`, `stopped`, or `lost` (no heartbeat for three intervals).
    pub status: String,
    /// Concurrent job slots.
    pub slots: i64,
    /// Jobs running at the last heartbeat.
    pub running: i64,
    /// Resident memory at the last heartbeat, bytes.
    pub rss_bytes: i64,
    /// Kinds it handles, comma-separated.
    pub kinds: String,
}

pub(crate) fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown".into())
}

/// Resident set size of this process in bytes, from `/proc/self/statm` (0 where unavailable).
pub fn rss_bytes() -> i64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<i64>().ok())
        .map(|pages| pages * 4096)
        .unwrap_or(0)
}

/// Peak resident set size in bytes (`VmHWM` of `/proc/self/status`), for the benchmark.
pub fn peak_rss_bytes() -> i64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<i64>().ok())
        })
        .map(|kb| kb * 1024)
        .unwrap_or(0)
}

pub(crate) async fn register(db: &Db, w: &WorkerInfo) -> DbResult<()> {
    db.execute(
        query(
            "INSERT INTO job_worker (id, host, pid, started_at, last_seen_at, status, slots, \
             running, rss_bytes, kinds) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(w.id.as_str())
        .bind(w.host.as_str())
        .bind(w.pid)
        .bind(w.started_at)
        .bind(w.last_seen_at)
        .bind(w.status.as_str())
        .bind(w.slots)
        .bind(w.running)
        .bind(w.rss_bytes)
        .bind(w.kinds.as_str()),
    )
    .await?;
    Ok(())
}

pub(crate) async fn beat(
    db: &Db,
    id: &str,
    status: &str,
    running: usize,
    now: i64,
) -> DbResult<()> {
    db.execute(
        query(
            "UPDATE job_worker SET last_seen_at = ?, status = ?, running = ?, rss_bytes = ? \
             WHERE id = ?",
        )
        .bind(now)
        .bind(status)
        .bind(running)
        .bind(rss_bytes())
        .bind(id),
    )
    .await?;
    Ok(())
}

/// Every registered worker, newest first; a `running` worker silent for longer than
/// `lost_after_ms` is reported as `lost`.
pub(crate) async fn list(db: &Db, now: i64, lost_after_ms: i64) -> DbResult<Vec<WorkerInfo>> {
    let mut rows: Vec<WorkerInfo> = db
        .fetch_all(query(
            "SELECT id, host, pid, started_at, last_seen_at, status, slots, running, rss_bytes, \
             kinds FROM job_worker ORDER BY started_at DESC, id",
        ))
        .await?;
    for w in &mut rows {
        if w.status != "stopped" && now - w.last_seen_at > lost_after_ms {
            w.status = "lost".into();
        }
    }
    Ok(rows)
}

//! scrm-jobs: the durable job engine every asynchronous thing in scrm runs on — mass sends,
//! SOP steps, syncs, cron tasks — on the same database as the data (SQLite, MySQL/MariaDB or
//! PostgreSQL through `scrm-db`), with no broker to run. It knows nothing of customers or WeCom.
//!
//! # A tour
//!
//! - [`queue`]: [`Jobs`], the client handle. [`Jobs::enqueue`] writes a [`NewJob`] inside the
//!   caller's `Tx`, so a job exists iff the write that caused it commits; unique keys make it
//!   idempotent; [`Jobs::enqueue_many`] writes 1,000 rows a statement for mass sends.
//! - [`job`]: the model. States are seed 002's codes (0 pending, 1 running, 2 done,
//!   3 failed = dead letter, 4 cancelled, 5 paused); [`KindOptions`] holds a kind's timeout
//!   (300 s) and backoff (60 s, 300 s, 900 s + jitter); handlers return a [`JobOutcome`] or a
//!   [`JobError`] (retryable or permanent).
//! - [`engine`] and `runner`: [`JobEngine`], the worker runtime: N slots, batch claims with
//!   leases, heartbeats, cooperative cancellation, timeouts, batched completion, drain on
//!   shutdown. Any number of engines in any number of processes share one database.
//! - `store`: the hot-path SQL — claims with `FOR UPDATE SKIP LOCKED` (PostgreSQL, MySQL) or
//!   under `BEGIN IMMEDIATE` (SQLite), completion by primary key in batches, lease expiry.
//! - [`limits`]: at most N running jobs per key and a random gap between starts, as
//!   scheduling in the claim transaction, never a sleeping worker.
//! - [`cron`]: schedules with time zones, fired exactly once per tick across engines; after an
//!   outage only the latest missed tick fires.
//! - [`wake`]: low latency without busy polling: in-process `Notify`, PostgreSQL
//!   LISTEN/NOTIFY, optional Redis pub/sub, a timer to the next due job, polling as fallback.
//! - [`clock`]: all time comes from a [`Clock`]; tests use [`ManualClock`] and never sleep.
//! - [`stats`]: seed 002's monitor figures per kind, also exported through `metrics`.
//! - [`alerts`]: failure-rate, dead-letter and queue-age rules, evaluated by a built-in cron
//!   job, sent once per incident through [`AlertSink`]s (a signed [`WebhookSink`] included).
//! - [`api`]: list, inspect, cancel, pause, resume, retry, replay, purge — tenant-scoped.
//! - [`builtin`]: the engine's own jobs: pruning and alert evaluation.
//! - [`bench`]: throughput, lateness and memory measurements (`scrm bench jobs`).
//!
//! # Use
//!
//! ```ignore
//! let jobs = Jobs::new(db.clone());
//! // In a request handler: enqueue in the same transaction as the domain write.
//! let mut tx = db.begin().await?;
//! // … insert the mass-send task …
//! jobs.enqueue(&mut tx, NewJob::new("mass_send.batch", &payload)?.group("task:42")).await?;
//! jobs.commit(tx).await?;
//! // In the worker role:
//! let engine = JobEngine::builder(jobs.clone())
//!     .register("mass_send.batch", KindOptions::default(), |ctx: JobContext, p: Value| async move {
//!         Ok(JobOutcome::Done)
//!     })
//!     .concurrency(32)
//!     .build()
//!     .start(shutdown.clone())
//!     .await?;
//! shutdown.cancelled().await;
//! engine.wait().await; // drained
//! ```

pub mod alerts;
pub mod api;
pub mod bench;
pub mod builtin;
pub mod clock;
pub mod cron;
pub mod engine;
mod error;
pub mod job;
pub mod limits;
pub mod queue;
mod runner;
pub mod stats;
mod store;
pub mod wake;
pub mod worker;

#[cfg(feature = "webhook")]
pub use alerts::WebhookSink;
pub use alerts::{Alert, AlertEvent, AlertRule, AlertSink, RuleType};
pub use api::{CancelResult, JobDetail, JobFilter, JobRow, Page, Scope, Target};
pub use clock::{Clock, ManualClock, SystemClock};
pub use cron::Schedule;
pub use engine::{EngineConfig, EngineHandle, JobEngine};
pub use error::{JobError, JobsError, JobsResult};
pub use job::{JobId, JobOutcome, JobState, KeyLimit, KindOptions, NewJob};
pub use queue::{Enqueued, Jobs, JobsOptions};
pub use stats::{KindStats, Stats};
pub use tokio_util::sync::CancellationToken;
pub use worker::{Handler, JobContext, WorkerInfo};

//! Automated workflows (seed 002): a trigger and ordered steps, run per customer (or per group
//! chat for scheduled group operations) on the job engine.
//!
//! - [`model`]: the definition (JSON and YAML), its checks naming each bad field, durations and
//!   time windows (Asia/Shanghai).
//! - [`store`]: workflows, versions (a published version is never edited: an edit makes the next
//!   one, and runs keep the version they started with), runs and the step log; starting runs in
//!   bulk, idempotent by run key (one run per subject per version).
//! - [`runner`]: the `automation.workflow.step` job — each step is a job, a delay or a closed
//!   window is the next job's `run_at`; pause, resume and cancel.
//! - [`triggers`]: customer added, tag added, joined group (domain events), schedules (cron).
//! - [`templates`]: seed 002's three example workflows; [`routes`]: the API.

pub mod model;
pub mod routes;
pub mod runner;
pub mod store;
pub mod templates;
pub mod triggers;

use std::time::Duration;

use scrm_jobs::KindOptions;
use scrm_jobs::engine::EngineBuilder;

use crate::state::AppState;

/// Run states (seed 002's task states).
pub mod status {
    pub const PENDING: i64 = 0;
    pub const RUNNING: i64 = 1;
    pub const DONE: i64 = 2;
    pub const FAILED: i64 = 3;
    pub const CANCELLED: i64 = 4;
    pub const PAUSED: i64 = 5;

    /// The name of a run state.
    pub fn name(s: i64) -> &'static str {
        match s {
            PENDING => "pending",
            RUNNING => "running",
            DONE => "done",
            FAILED => "failed",
            CANCELLED => "cancelled",
            PAUSED => "paused",
            _ => "unknown",
        }
    }

    /// Seed 002's label of a run state.
    pub fn label_zh(s: i64) -> &'static str {
        match s {
            PENDING => "待执行",
            RUNNING => "执行中",
            DONE => "已完成",
            FAILED => "失败",
            CANCELLED => "已取消",
            PAUSED => "暂停中",
            _ => "未知",
        }
    }

    /// Workflow states.
    pub mod workflow {
        pub const DRAFT: i64 = 0;
        pub const PUBLISHED: i64 = 1;
        pub const DISABLED: i64 = 2;

        pub fn name(s: i64) -> &'static str {
            match s {
                DRAFT => "draft",
                PUBLISHED => "published",
                _ => "disabled",
            }
        }
    }
}

/// Step log states.
pub mod step_status {
    pub const WAITING: i64 = 0;
    pub const CALLING: i64 = 1;
    pub const DONE: i64 = 2;
    pub const FAILED: i64 = 3;
    pub const CANCELLED: i64 = 4;

    pub fn name(s: i64) -> &'static str {
        match s {
            WAITING => "waiting",
            CALLING => "calling",
            DONE => "done",
            FAILED => "failed",
            CANCELLED => "cancelled",
            _ => "skipped",
        }
    }
}

/// Register the step and tick kinds, and subscribe the event triggers.
pub fn register(builder: EngineBuilder, state: &AppState) -> EngineBuilder {
    triggers::subscribe(state);
    // Steps call WeCom: quick first retries, then the seed's schedule (SCRM_WECOM_RETRY_SECS,
    // default 5, 60, 300, 900 s).
    let step = KindOptions::default()
        .timeout(Duration::from_secs(120))
        .backoff(state.config.wecom_retry.clone())
        .max_attempts(6);
    let (s1, s2) = (state.clone(), state.clone());
    builder
        .register(store::STEP, step, move |ctx, p| {
            runner::run_step(s1.clone(), ctx, p)
        })
        .register(
            triggers::TICK,
            KindOptions::default().timeout(Duration::from_secs(300)),
            move |ctx, p| triggers::run_tick(s2.clone(), ctx, p),
        )
}

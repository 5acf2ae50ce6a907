//! The device job kinds and their schedules (auto-like every 5 min, moments collection every
//! 30 min, moments clean-up daily at 04:30).

use std::time::Duration;

use scrm_db::query;
use scrm_jobs::engine::EngineBuilder;
use scrm_jobs::{JobContext, JobError, JobOutcome, KindOptions, Schedule};
use scrm_wecom::device::command;
use serde_json::{Value, json};

use super::ai;
use super::commands::{self, NewCommand, record};
use crate::state::AppState;

/// Job kind: fetch moments of auto-like accounts (seed 002's `workbench:autoLike`, every 5 min).
pub const AUTO_LIKE: &str = "devices.auto_like";
/// Job kind: fetch moments of every active account (seed 002's `moments:collect`, every 30 min).
pub const COLLECT: &str = "devices.moments.collect";

/// Job kind: delete moments older than `SCRM_MOMENT_RETENTION_DAYS` (daily).
pub const CLEANUP: &str = "devices.moments.cleanup";
/// Moments deleted per statement.
const CLEANUP_BATCH: usize = 1000;

/// Register every device job kind.
pub fn register(builder: EngineBuilder, state: &AppState) -> EngineBuilder {
    let (s1, s2, s3, s4, s5, s6, s7) = (
        state.clone(),
        state.clone(),
        state.clone(),
        state.clone(),
        state.clone(),
        state.clone(),
        state.clone(),
    );
    let ai_opts = KindOptions::default()
        .timeout(Duration::from_secs(90))
        .backoff(vec![Duration::from_secs(5), Duration::from_secs(30)])
        .max_attempts(3);
    builder
        .register(commands::RELEASE, KindOptions::default(), move |ctx, p| {
            commands::run_release(s1.clone(), ctx, p)
        })
        .register(ai::REPLY, ai_opts, move |ctx, p| {
            ai::run_reply(s2.clone(), ctx, p)
        })
        .register(AUTO_LIKE, KindOptions::default(), move |ctx, p| {
            fetch_moments(s3.clone(), ctx, p, true)
        })
        .register(COLLECT, KindOptions::default(), move |ctx, p| {
            fetch_moments(s4.clone(), ctx, p, false)
        })
        .register(
            super::group_send::FINISH,
            KindOptions::default(),
            move |ctx, p| super::group_send::run_finish(s5.clone(), ctx, p),
        )
        .register(CLEANUP, KindOptions::default(), move |_ctx, _p| {
            let state = s7.clone();
            async move {
                let n = clean_moments(&state, crate::state::now_ms())
                    .await
                    .map_err(JobError::retryable)?;
                tracing::info!(deleted = n, "moments past their retention deleted");
                Ok(JobOutcome::Done)
            }
        })
        .register(
            super::health::SCORE,
            KindOptions::default().timeout(Duration::from_secs(1800)),
            move |ctx, p| super::health::run_score(s6.clone(), ctx, p),
        )
}

/// Startup: the built-in schedules.
pub async fn on_startup(state: &AppState) -> anyhow::Result<()> {
    state
        .jobs
        .ensure_schedule(&Schedule::new(
            "devices.auto_like",
            "*/5 * * * *",
            AUTO_LIKE,
        ))
        .await?;
    state
        .jobs
        .ensure_schedule(&Schedule::new(
            "devices.moments.collect",
            "*/30 * * * *",
            COLLECT,
        ))
        .await?;
    state
        .jobs
        .ensure_schedule(&Schedule::new(
            "devices.moments.cleanup",
            "30 4 * * *",
            CLEANUP,
        ))
        .await?;
    state
        .jobs
        .ensure_schedule(&super::health::schedule())
        .await?;
    Ok(())
}

/// A `fetch_moments` command for each ACTIVE account (only auto-like ones when `auto_like`);
/// new moments are stored, and liked on auto-like accounts, when the results come back.
async fn fetch_moments(
    state: AppState,
    _ctx: JobContext,
    _p: Value,
    auto_like: bool,
) -> Result<JobOutcome, JobError> {
    let mut q = query("SELECT tenant_id, wxid FROM device_account WHERE status = 'ACTIVE'");
    if auto_like {
        q.push_sql(" AND auto_like = 1");
    }
    let accounts: Vec<(i64, String)> = state.db.fetch_all(q).await.map_err(JobError::retryable)?;
    let source = if auto_like { "auto_like" } else { "collect" };
    for (tenant_id, wxid) in accounts {
        let mut tx = state.db.begin().await.map_err(JobError::retryable)?;
        record(
            &state,
            &mut tx,
            tenant_id,
            NewCommand::new(&wxid, command::FETCH_MOMENTS, json!({}), source, 0),
        )
        .await
        .map_err(JobError::retryable)?;
        tx.commit().await.map_err(JobError::retryable)?;
    }
    Ok(JobOutcome::Done)
}

/// The moments clean-up: deletes every tenant's moments posted more than the retention
/// (`SCRM_MOMENT_RETENTION_DAYS`) before `now`, a batch at a time (short statements beside a
/// collection writing new ones). Returns how many.
pub async fn clean_moments(state: &AppState, now: i64) -> scrm_db::DbResult<u64> {
    let cutoff = now - state.config.moment_retention_days * 86_400_000;
    let mut deleted = 0;
    loop {
        let ids: Vec<(i64,)> = state
            .db
            .fetch_all(
                query(
                    "SELECT id FROM device_moment WHERE posted_at < ? ORDER BY posted_at LIMIT ?",
                )
                .bind(cutoff)
                .bind(CLEANUP_BATCH as i64),
            )
            .await?;
        if ids.is_empty() {
            return Ok(deleted);
        }
        let mut q = query("DELETE FROM device_moment WHERE id IN ");
        q.push_in_list(ids.iter().map(|i| i.0));
        deleted += state.db.execute(q).await?.rows_affected;
        if ids.len() < CLEANUP_BATCH {
            return Ok(deleted);
        }
    }
}

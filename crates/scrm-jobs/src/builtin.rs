//! The engine's own jobs, run through the engine like any other so each tick runs once:
//! `scrm_jobs.prune` (hourly) deletes finished jobs past their retention and old bookkeeping
//! rows; `scrm_jobs.alerts` (every minute) evaluates the alert rules.

use std::collections::HashMap;
use std::sync::Arc;

use scrm_db::query;

use crate::alerts::AlertSink;
use crate::cron::Schedule;
use crate::engine::{EngineConfig, Registered};
use crate::error::{JobError, JobsResult};
use crate::job::{JobOutcome, KindOptions, ms};
use crate::queue::Jobs;
use crate::worker::{Handler, JobContext};

/// Kind of the pruning job.
pub const PRUNE: &str = "scrm_jobs.prune";
/// Kind of the alert evaluation job.
pub const ALERTS: &str = "scrm_jobs.alerts";

pub(crate) fn register(
    handlers: &mut HashMap<String, Registered>,
    jobs: &Jobs,
    sinks: &[Arc<dyn AlertSink>],
    config: &EngineConfig,
) {
    let retention = ms(config.retention);
    let opts = KindOptions::default().max_attempts(1);
    let prune = move |ctx: JobContext, _p: serde_json::Value| async move {
        let n = prune_finished(ctx.jobs(), ctx.now_ms() - retention).await?;
        tracing::info!(deleted = n, "jobs: pruned finished jobs");
        Ok::<_, JobError>(JobOutcome::Done)
    };
    let sinks: Arc<Vec<Arc<dyn AlertSink>>> = Arc::new(sinks.to_vec());
    let alerts = move |ctx: JobContext, _p: serde_json::Value| {
        let sinks = sinks.clone();
        async move {
            ctx.jobs().evaluate_alerts(&sinks).await?;
            Ok::<_, JobError>(JobOutcome::Done)
        }
    };
    for (kind, h) in [
        (PRUNE, Arc::new(prune) as Arc<dyn Handler>),
        (ALERTS, Arc::new(alerts) as Arc<dyn Handler>),
    ] {
        jobs.configure_kind(kind, opts.clone());
        handlers.insert(
            kind.into(),
            Registered {
                handler: h,
                opts: opts.clone(),
            },
        );
    }
}

pub(crate) async fn ensure_schedules(jobs: &Jobs) -> JobsResult<()> {
    jobs.ensure_schedule(&Schedule::new(PRUNE, "17 * * * *", PRUNE))
        .await?;
    jobs.ensure_schedule(&Schedule::new(ALERTS, "* * * * *", ALERTS))
        .await?;
    Ok(())
}

/// Delete done and cancelled jobs finished before `before` (with their attempts), in chunks
/// of 1,000 so no transaction grows large; also statistics older than 90 days, workers gone
/// for a day and alerts resolved over 30 days ago. Dead jobs stay until replayed or purged.
pub async fn prune_finished(jobs: &Jobs, before: i64) -> JobsResult<u64> {
    let db = jobs.db();
    let mut total = 0;
    loop {
        let ids: Vec<(i64,)> = db
            .fetch_all(
                query(
                    "SELECT id FROM job WHERE state IN (2, 4) AND finished_at < ? \
                     ORDER BY id LIMIT 1000",
                )
                .bind(before),
            )
            .await?;
        if ids.is_empty() {
            break;
        }
        let mut tx = db.begin().await?;
        let mut q = query("DELETE FROM job_attempt WHERE job_id IN ");
        q.push_in_list(ids.iter().map(|r| r.0));
        tx.execute(q).await?;
        let mut q = query("DELETE FROM job WHERE state IN (2, 4) AND id IN ");
        q.push_in_list(ids.iter().map(|r| r.0));
        total += tx.execute(q).await?.rows_affected;
        tx.commit().await?;
        if ids.len() < 1000 {
            break;
        }
    }
    let now = jobs.now_ms();
    db.execute(query("DELETE FROM job_stat WHERE bucket < ?").bind(now - 90 * 86_400_000))
        .await?;
    db.execute(query("DELETE FROM job_worker WHERE last_seen_at < ?").bind(now - 86_400_000))
        .await?;
    db.execute(
        query("DELETE FROM job_alert WHERE state = 'resolved' AND resolved_at < ?")
            .bind(now - 30 * 86_400_000),
    )
    .await?;
    Ok(total)
}

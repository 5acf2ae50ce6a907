//! Sync from WeCom (seed 003): departments, members, corp tags, customers with their follow
//! relations and tags, and customer group chats.
//!
//! A run is a job (`wework.sync`) with a log row. It fetches everything it needs first
//! ([`fetch`], nothing written), then applies the differences in one transaction ([`apply`],
//! [`apply_customers`]) together with its final log, so a run that fails midway changes
//! nothing. Incremental by default: objects whose content hash ([`hash`]) did not change are not
//! written; `force` rewrites everything. One run per tenant at a time (a concurrency key), and a
//! trigger while one of that type is pending or running returns that run.

pub mod apply;
pub mod apply_customers;
pub mod fetch;
pub mod hash;
pub mod log;
mod repair;
pub mod routes;

use std::sync::Arc;
use std::time::Duration;

use scrm_jobs::{JobContext, JobError, JobOutcome, KeyLimit, NewJob};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::client;
use super::config::{self, WeworkConfig};
use crate::state::{AppState, now_ms};
use fetch::Progress;

pub use repair::repair;

/// The job kind of a run.
pub const JOB_KIND: &str = "wework.sync";

/// What a run syncs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SyncType {
    Department,
    User,
    Tag,
    Customer,
    Groupchat,
    Full,
}

impl SyncType {
    pub const ALL: [SyncType; 6] = [
        Self::Department,
        Self::User,
        Self::Tag,
        Self::Customer,
        Self::Groupchat,
        Self::Full,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Department => "department",
            Self::User => "user",
            Self::Tag => "tag",
            Self::Customer => "customer",
            Self::Groupchat => "groupchat",
            Self::Full => "full",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == s)
    }

    /// What a run of this type fetches and applies, in dependency order: members before the
    /// customers that follow them, tags before the customers that carry them, customers before
    /// the groups that link to them.
    pub fn phases(self) -> &'static [SyncType] {
        match self {
            Self::Department => &[Self::Department],
            Self::User => &[Self::User],
            Self::Tag => &[Self::Tag],
            Self::Customer => &[Self::Tag, Self::Customer],
            Self::Groupchat => &[Self::Groupchat],
            Self::Full => &[
                Self::Department,
                Self::User,
                Self::Tag,
                Self::Customer,
                Self::Groupchat,
            ],
        }
    }
}

/// The result of asking for a run.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Triggered {
    pub sync_log_id: i64,
    pub sync_type: String,
    pub status: String,
    /// A run of this type was already pending or running; this is that run.
    pub already_running: bool,
}

/// Start a run of `sync_type` for the tenant (or return the one already pending or running).
pub async fn trigger(
    state: &AppState,
    c: &WeworkConfig,
    sync_type: SyncType,
    force: bool,
    by: &str,
) -> anyhow::Result<Triggered> {
    let mut tx = state.db.begin().await?;
    if let Some(active) = log::active(&mut tx, c.tenant_id, sync_type.as_str()).await? {
        return Ok(Triggered {
            sync_log_id: active.id,
            sync_type: active.sync_type,
            status: active.status,
            already_running: true,
        });
    }
    let id = log::create(&mut tx, c.tenant_id, c.id, sync_type.as_str(), force, by).await?;
    // One run per tenant at a time: runs of different types touch the same rows.
    let job = NewJob::new(JOB_KIND, &json!({"logId": id}))?
        .tenant(c.tenant_id)
        .group(format!("wework-sync:{}", c.tenant_id))
        .limited_by(
            format!("wework-sync:{}", c.tenant_id),
            KeyLimit::concurrency(1),
        );
    state.jobs.enqueue(&mut tx, job).await?;
    state.jobs.commit(tx).await?;
    Ok(Triggered {
        sync_log_id: id,
        sync_type: sync_type.as_str().into(),
        status: log::status::PENDING.into(),
        already_running: false,
    })
}

/// Called with (phase, done, total) while a run progresses (the CLI's progress bar).
pub type OnProgress = Arc<dyn Fn(&str, i64, i64) + Send + Sync>;

/// How a run ended.
#[derive(Debug)]
pub enum RunEnd {
    /// Finished (success, partial or failed), recorded in the log.
    Finished(Box<log::LogRow>),
    /// WeCom failed transiently; worth another attempt (the log says so).
    Retry(String),
}

/// Run a pending log: fetch, then apply in one transaction. `may_retry`: a transient WeCom
/// failure returns [`RunEnd::Retry`] instead of failing the run.
pub async fn run(
    state: &AppState,
    log_id: i64,
    may_retry: bool,
    on_progress: Option<OnProgress>,
) -> anyhow::Result<RunEnd> {
    let row = log::by_id(&state.db, log_id)
        .await?
        .ok_or_else(|| anyhow::anyhow!("sync log {log_id} not found"))?;
    if !matches!(
        row.status.as_str(),
        log::status::PENDING | log::status::RUNNING
    ) {
        return Ok(RunEnd::Finished(Box::new(row)));
    }
    let sync_type = SyncType::parse(&row.sync_type)
        .ok_or_else(|| anyhow::anyhow!("unknown sync type {}", row.sync_type))?;
    let Some(c) = config::for_tenant(state, row.tenant_id)
        .await?
        .filter(|c| c.enabled)
    else {
        return fail(state, &row, "no enabled WeCom configuration".into(), 0).await;
    };
    log::start(&state.db, log_id).await?;
    let started = std::time::Instant::now();
    // A fresh handle per run: its counter is this run's WeCom calls alone (other runs and
    // callbacks share the client). Calls of an attempt that is retried are added to the log.
    let conn = client::connect(state, &c)?;
    let progress = Arc::new(Progress::default());
    let ticker = AbortOnDrop(
        tokio::spawn(report_progress(
            state.clone(),
            log_id,
            progress.clone(),
            on_progress,
        ))
        .abort_handle(),
    );
    // The group chats are fetched beside the rest (other APIs: their own slots) and still while
    // the customers are applied (they need the customers' ids, so they are applied last).
    let slots = fetch::Slots::default();
    let groups_task = sync_type.phases().contains(&SyncType::Groupchat).then(|| {
        let (conn, progress) = (conn.clone(), progress.clone());
        tokio::spawn(async move {
            let r = fetch::groups(&conn, &progress, &fetch::Slots::default()).await;
            (r, std::time::Instant::now())
        })
    });
    let _groups_guard = groups_task.as_ref().map(|t| AbortOnDrop(t.abort_handle()));
    let mut ctx = apply::Ctx::new(row.tenant_id, now_ms(), row.force_full != 0);
    // A tenant's first customer sync (nothing to compare with) writes the customers while they
    // are fetched, in the run's one transaction. Not on SQLite, whose one writer would hold
    // the database for the whole fetch.
    let streaming = sync_type.phases().contains(&SyncType::Customer)
        && state.db.backend() != scrm_db::Backend::Sqlite
        && !apply_customers::synced_before(&state.db, row.tenant_id).await?;
    let fetch_phases: Vec<SyncType> = sync_type
        .phases()
        .iter()
        .copied()
        .filter(|p| !streaming || *p != SyncType::Customer)
        .collect();
    let mut staged = match fetch::head(&conn, &fetch_phases, &progress, &slots).await {
        Ok(s) => s,
        Err(e) => return fetch_failed(state, &row, &conn, e, may_retry).await,
    };
    let mut head_done = std::time::Instant::now();
    if !streaming {
        // The apply's transaction holds SQLite's write lock: the live progress is no longer
        // written to the log (the CLI still gets it) until the run ends.
        let _ = log::progress(&state.db, log_id, "apply", 0, staged.fetched()).await;
        progress
            .db_writes
            .store(false, std::sync::atomic::Ordering::Relaxed);
        if let Ok(mut p) = progress.phase.lock() {
            *p = "apply".into();
        }
    }
    let apply_started = std::time::Instant::now();
    let mut tx = state.db.begin().await?;
    if tx.backend() == scrm_db::Backend::Postgres {
        // The apply repeats a few statements hundreds of times while the tables grow under
        // them. After five runs PostgreSQL may cache a generic plan made when the tenant's
        // tables were empty (a first sync) — a sequential scan of `customer` per batch, which
        // made a 100,000-customer apply quadratic (170 s, 30,000 in 6 s). Plan each time.
        tx.execute(scrm_db::query(
            "SET LOCAL plan_cache_mode = force_custom_plan",
        ))
        .await?;
    }
    let mut applied = apply_head(&mut tx, &mut ctx, &staged).await;
    if streaming && applied.is_ok() {
        let (sink, mut pages) = tokio::sync::mpsc::unbounded_channel();
        let customers_task = {
            let (conn, progress, slots) = (conn.clone(), progress.clone(), slots.clone());
            tokio::spawn(async move {
                fetch::customer_pages(&conn, &progress, &slots, Some(sink)).await
            })
        };
        let _customers_guard = AbortOnDrop(customers_task.abort_handle());
        ctx.bootstrap = true;
        ctx.partial = true;
        let mut stream = apply_customers::Streaming::default();
        applied = ctx.preload_staff(&mut tx).await;
        while applied.is_ok() {
            let Some(page) = pages.recv().await else {
                break;
            };
            applied = stream.page(&mut tx, &mut ctx, page).await;
        }
        if applied.is_ok() {
            let fetched = match customers_task.await {
                Ok(r) => r,
                Err(e) => Err(scrm_wecom::WeComError::Decode {
                    api: "externalcontact/batch/get_by_user",
                    message: format!("the customers' fetch stopped: {e}"),
                }),
            };
            head_done = std::time::Instant::now();
            if let Err(e) = fetched {
                drop(tx);
                return fetch_failed(state, &row, &conn, e, may_retry).await;
            }
            match stream.finish(&mut tx, &mut ctx).await {
                Ok(list) => staged.customers = Some(list),
                Err(e) => applied = Err(e),
            }
        }
    }
    let head_ms = head_done.duration_since(started).as_millis();
    // The group chats: wait for their fetch, then apply them.
    // The last WeCom call ended with the head's fetch or the group chats', whichever was later.
    let mut fetched_at = head_done;
    if let Some(task) = groups_task {
        let (groups, at) = match task.await {
            Ok(r) => r,
            Err(e) => (
                Err(scrm_wecom::WeComError::Decode {
                    api: "externalcontact/groupchat/get",
                    message: format!("the group chats' fetch stopped: {e}"),
                }),
                std::time::Instant::now(),
            ),
        };
        fetched_at = fetched_at.max(at);
        match groups {
            Ok(g) => staged.add_groups(g),
            Err(e) => {
                drop(tx);
                return fetch_failed(state, &row, &conn, e, may_retry).await;
            }
        }
        if applied.is_ok() {
            applied = apply_groups(&mut tx, &mut ctx, &staged).await;
        }
    }
    drop(ticker);
    ctx.errors.extend(staged.errors.iter().cloned());
    ctx.counts.failed += staged.errors.len() as i64;
    if let Err(e) = applied {
        drop(tx);
        return fail(
            state,
            &row,
            format!("applying the changes failed, nothing was changed: {e}"),
            conn.calls_made(),
        )
        .await;
    }
    let fetch_ms = fetched_at.duration_since(started).as_millis();
    let apply_ms = apply_started.elapsed().as_millis();
    let after_ms = fetched_at.max(apply_started).elapsed().as_millis();
    let status = if ctx.errors.is_empty() {
        log::status::SUCCESS
    } else {
        log::status::PARTIAL
    };
    let api_calls = conn.calls_made();
    log::finish(
        &mut tx,
        log_id,
        log::Outcome {
            status,
            fetched: staged.fetched(),
            counts: &ctx.counts,
            errors: &ctx.errors,
            // Where the time went: WeCom (fetch) or the database (apply), which overlap: the
            // customers are applied while the group chats are fetched.
            message: Some(format!(
                "fetched in {fetch_ms} ms (customers in {head_ms} ms), applied in {apply_ms} ms, \
                 {after_ms} ms of it after the last WeCom call"
            )),
            api_calls,
        },
    )
    .await?;
    tx.commit().await?;
    record_metrics(sync_type, status, started.elapsed(), &ctx.counts);
    tracing::info!(
        log_id,
        sync_type = sync_type.as_str(),
        status,
        created = ctx.counts.created,
        updated = ctx.counts.updated,
        deleted = ctx.counts.deleted,
        unchanged = ctx.counts.unchanged,
        "sync finished"
    );
    let row = log::by_id(&state.db, log_id)
        .await?
        .ok_or_else(|| anyhow::anyhow!("sync log vanished"))?;
    Ok(RunEnd::Finished(Box::new(row)))
}

/// Apply everything but the group chats, in dependency order.
async fn apply_head(
    tx: &mut scrm_db::Tx,
    ctx: &mut apply::Ctx,
    s: &fetch::Staged,
) -> scrm_db::DbResult<()> {
    if let Some(d) = &s.departments {
        apply::departments(tx, ctx, d).await?;
    }
    if let Some(u) = &s.users {
        apply::users(tx, ctx, u).await?;
    }
    if let Some(t) = &s.tags {
        apply::corp_tags(tx, ctx, t).await?;
    }
    if let Some(c) = &s.customers {
        apply_customers::all_customers(tx, ctx, c).await?;
    }
    Ok(())
}

/// Apply the group chats (after the customers their members link to).
async fn apply_groups(
    tx: &mut scrm_db::Tx,
    ctx: &mut apply::Ctx,
    s: &fetch::Staged,
) -> scrm_db::DbResult<()> {
    if let Some(g) = &s.groups {
        apply::all_groups(tx, ctx, g, &s.unreadable_chats).await?;
    }
    Ok(())
}

/// Aborts a task when dropped (every way out of a run stops its helpers).
struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A fetch failed: retried later when WeCom's failure is transient and the job may, else the
/// run fails having changed nothing.
async fn fetch_failed(
    state: &AppState,
    row: &log::LogRow,
    conn: &client::Conn,
    e: scrm_wecom::WeComError,
    may_retry: bool,
) -> anyhow::Result<RunEnd> {
    let advice = super::test::advice(e.errcode(), "this sync");
    // A token error that survived the client's refresh-and-retry is a bad or revoked secret.
    if may_retry && e.is_transient() {
        tracing::warn!(log_id = row.id, error = %e, "sync fetch failed; will retry");
        state
            .db
            .execute(
                scrm_db::query("UPDATE wework_sync_log SET message = ?, api_calls = api_calls + ? WHERE id = ?")
                    .bind(format!("attempt failed, retrying: {e}"))
                    .bind(conn.calls_made())
                    .bind(row.id),
            )
            .await?;
        return Ok(RunEnd::Retry(e.to_string()));
    }
    fail(
        state,
        row,
        format!("{e}. {advice} Nothing was changed."),
        conn.calls_made(),
    )
    .await
}

async fn fail(
    state: &AppState,
    row: &log::LogRow,
    message: String,
    api_calls: i64,
) -> anyhow::Result<RunEnd> {
    tracing::warn!(log_id = row.id, %message, "sync failed");
    let mut tx = state.db.begin().await?;
    log::finish(
        &mut tx,
        row.id,
        log::Outcome {
            status: log::status::FAILED,
            fetched: 0,
            counts: &apply::Counts::default(),
            errors: &[],
            message: Some(message),
            api_calls,
        },
    )
    .await?;
    tx.commit().await?;
    if let Some(t) = SyncType::parse(&row.sync_type) {
        metrics::counter!("wework_sync_runs_total", "type" => t.as_str(), "status" => log::status::FAILED).increment(1);
    }
    let row = log::by_id(&state.db, row.id)
        .await?
        .ok_or_else(|| anyhow::anyhow!("sync log vanished"))?;
    Ok(RunEnd::Finished(Box::new(row)))
}

fn record_metrics(t: SyncType, status: &'static str, took: Duration, c: &apply::Counts) {
    let ty = t.as_str();
    metrics::counter!("wework_sync_runs_total", "type" => ty, "status" => status).increment(1);
    metrics::histogram!("wework_sync_duration_seconds", "type" => ty).record(took.as_secs_f64());
    for (op, n) in [
        ("created", c.created),
        ("updated", c.updated),
        ("deleted", c.deleted),
        ("unchanged", c.unchanged),
        ("failed", c.failed),
    ] {
        metrics::counter!("wework_sync_rows_total", "type" => ty, "op" => op)
            .increment(u64::try_from(n).unwrap_or(0));
    }
}

/// Write the live progress to the log twice a second (and tell the CLI).
async fn report_progress(state: AppState, log_id: i64, p: Arc<Progress>, on: Option<OnProgress>) {
    use std::sync::atomic::Ordering;
    loop {
        let phase = p.phase.lock().map(|s| s.clone()).unwrap_or_default();
        let (done, total) = (
            p.done.load(Ordering::Relaxed),
            p.total.load(Ordering::Relaxed),
        );
        if p.db_writes.load(Ordering::Relaxed) {
            let _ = log::progress(&state.db, log_id, &phase, done, total).await;
        }
        if let Some(f) = &on {
            f(&phase, done, total);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The job handler of `wework.sync`.
pub async fn handle(
    state: AppState,
    ctx: JobContext,
    payload: serde_json::Value,
) -> Result<JobOutcome, JobError> {
    let log_id = payload["logId"]
        .as_i64()
        .ok_or_else(|| JobError::permanent("payload without logId"))?;
    match run(&state, log_id, !ctx.is_last_attempt(), None).await {
        Ok(RunEnd::Finished(_)) => Ok(JobOutcome::Done),
        Ok(RunEnd::Retry(why)) => Err(JobError::retryable(why)),
        Err(e) => Err(JobError::retryable(format!("{e:#}"))),
    }
}

/// The job handler of the reconciliation schedules: a run for every tenant with an enabled
/// configuration (`force` for the nightly one). Callbacks get lost; this catches up.
pub async fn reconcile(
    state: AppState,
    payload: serde_json::Value,
) -> Result<JobOutcome, JobError> {
    let force = payload["force"].as_bool().unwrap_or(false);
    for tenant in config::enabled_tenants(&state.db).await? {
        let c = config::for_tenant(&state, tenant)
            .await
            .map_err(JobError::retryable)?;
        if let Some(c) = c {
            trigger(&state, &c, SyncType::Full, force, "schedule")
                .await
                .map_err(JobError::retryable)?;
        }
    }
    Ok(JobOutcome::Done)
}

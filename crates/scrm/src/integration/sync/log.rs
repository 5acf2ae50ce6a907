//! Sync logs (seed 003's `sync-log`): one row per run with its status (pending, running,
//! success, failed, partial), counts, duration, errors and live progress.

use scrm_db::{Db, DbResult, Tx, query};
use serde::Serialize;

use super::apply::Counts;
use super::fetch::ItemError;
use crate::state::{iso, iso_opt, now_ms};

/// Seed 003's statuses.
pub mod status {
    pub const PENDING: &str = "pending";
    pub const RUNNING: &str = "running";
    pub const SUCCESS: &str = "success";
    pub const FAILED: &str = "failed";
    pub const PARTIAL: &str = "partial";
    pub const ALL: &[&str] = &[PENDING, RUNNING, SUCCESS, FAILED, PARTIAL];
}

/// Errors kept per log (the first ones; the count says how many there were).
const MAX_ERRORS: usize = 100;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct LogRow {
    pub id: i64,
    pub tenant_id: i64,
    pub config_id: i64,
    pub sync_type: String,
    pub force_full: i64,
    pub trigger_by: String,
    pub status: String,
    pub phase: Option<String>,
    pub fetched: i64,
    pub created: i64,
    pub updated: i64,
    pub deleted: i64,
    pub failed: i64,
    pub unchanged: i64,
    pub api_calls: i64,
    pub progress_done: i64,
    pub progress_total: i64,
    pub errors: Option<String>,
    pub message: Option<String>,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    pub duration_ms: Option<i64>,
    pub created_at: i64,
}

const COLUMNS: &str = "id, tenant_id, config_id, sync_type, force_full, trigger_by, status, phase, fetched, created, \
    updated, deleted, failed, unchanged, api_calls, progress_done, progress_total, errors, message, started_at, \
    finished_at, duration_ms, created_at";

/// A log as the API shows it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LogView {
    pub id: i64,
    pub sync_type: String,
    pub force: bool,
    pub trigger: String,
    pub status: String,
    pub phase: Option<String>,
    pub fetched: i64,
    pub created: i64,
    pub updated: i64,
    pub deleted: i64,
    pub failed: i64,
    pub unchanged: i64,
    pub api_calls: i64,
    pub progress: Progress,
    #[schema(value_type = Vec<Object>)]
    pub errors: serde_json::Value,
    pub message: Option<String>,
    pub start_time: Option<String>,
    pub end_time: Option<String>,
    pub duration_ms: Option<i64>,
    pub create_time: String,
}

/// Live progress of a run's current phase.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Progress {
    pub done: i64,
    pub total: i64,
}

impl From<LogRow> for LogView {
    fn from(r: LogRow) -> Self {
        LogView {
            id: r.id,
            sync_type: r.sync_type,
            force: r.force_full != 0,
            trigger: r.trigger_by,
            status: r.status,
            phase: r.phase,
            fetched: r.fetched,
            created: r.created,
            updated: r.updated,
            deleted: r.deleted,
            failed: r.failed,
            unchanged: r.unchanged,
            api_calls: r.api_calls,
            progress: Progress {
                done: r.progress_done,
                total: r.progress_total,
            },
            errors: r
                .errors
                .as_deref()
                .and_then(|e| serde_json::from_str(e).ok())
                .unwrap_or_else(|| serde_json::json!([])),
            message: r.message,
            start_time: iso_opt(r.started_at),
            end_time: iso_opt(r.finished_at),
            duration_ms: r.duration_ms,
            create_time: iso(r.created_at),
        }
    }
}

/// A new pending run.
pub async fn create(
    tx: &mut Tx,
    tenant_id: i64,
    config_id: i64,
    sync_type: &str,
    force: bool,
    trigger: &str,
) -> DbResult<i64> {
    tx.insert_id(
        query("INSERT INTO wework_sync_log (tenant_id, config_id, sync_type, force_full, trigger_by, status, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)")
            .bind(tenant_id)
            .bind(config_id)
            .bind(sync_type)
            .bind(i64::from(force))
            .bind(trigger)
            .bind(status::PENDING)
            .bind(now_ms()),
    )
    .await
}

/// The pending or running run of a type, if any (two runs of one type never overlap).
pub async fn active(tx: &mut Tx, tenant_id: i64, sync_type: &str) -> DbResult<Option<LogRow>> {
    tx.fetch_optional(
        query(format!("SELECT {COLUMNS} FROM wework_sync_log WHERE tenant_id = ? AND sync_type = ? AND status IN ('pending', 'running') ORDER BY id LIMIT 1"))
            .bind(tenant_id)
            .bind(sync_type),
    )
    .await
}

/// One run of the tenant.
pub async fn get(db: &Db, tenant_id: i64, id: i64) -> DbResult<Option<LogRow>> {
    db.fetch_optional(
        query(format!(
            "SELECT {COLUMNS} FROM wework_sync_log WHERE tenant_id = ? AND id = ?"
        ))
        .bind(tenant_id)
        .bind(id),
    )
    .await
}

/// One run by id (the job knows only the id).
pub async fn by_id(db: &Db, id: i64) -> DbResult<Option<LogRow>> {
    db.fetch_optional(
        query(format!(
            "SELECT {COLUMNS} FROM wework_sync_log WHERE id = ?"
        ))
        .bind(id),
    )
    .await
}

/// Mark a run started.
pub async fn start(db: &Db, id: i64) -> DbResult<()> {
    let now = now_ms();
    db.execute(
        query("UPDATE wework_sync_log SET status = ?, started_at = COALESCE(started_at, ?), message = NULL WHERE id = ?")
            .bind(status::RUNNING)
            .bind(now)
            .bind(id),
    )
    .await
    .map(|_| ())
}

/// Record live progress.
pub async fn progress(db: &Db, id: i64, phase: &str, done: i64, total: i64) -> DbResult<()> {
    db.execute(
        query("UPDATE wework_sync_log SET phase = ?, progress_done = ?, progress_total = ? WHERE id = ? AND status = 'running'")
            .bind(phase)
            .bind(done)
            .bind(total)
            .bind(id),
    )
    .await
    .map(|_| ())
}

/// The final record of a run.
pub struct Outcome<'a> {
    pub status: &'a str,
    pub fetched: i64,
    pub counts: &'a Counts,
    pub errors: &'a [ItemError],
    pub message: Option<String>,
    pub api_calls: i64,
}

/// Finish a run; in `tx` when the run applied changes, so the log commits with them.
pub async fn finish(tx: &mut Tx, id: i64, o: Outcome<'_>) -> DbResult<()> {
    let now = now_ms();
    let errors = serde_json::to_string(&o.errors.iter().take(MAX_ERRORS).collect::<Vec<_>>())
        .unwrap_or_else(|_| "[]".into());
    tx.execute(
        query(
            "UPDATE wework_sync_log SET status = ?, fetched = ?, created = ?, updated = ?, deleted = ?, failed = ?, \
             unchanged = ?, api_calls = api_calls + ?, errors = ?, message = ?, finished_at = ?, \
             duration_ms = ? - COALESCE(started_at, created_at), phase = NULL WHERE id = ?",
        )
        .bind(o.status)
        .bind(o.fetched)
        .bind(o.counts.created)
        .bind(o.counts.updated)
        .bind(o.counts.deleted)
        .bind(o.counts.failed)
        .bind(o.counts.unchanged)
        .bind(o.api_calls)
        .bind(errors)
        .bind(o.message)
        .bind(now)
        .bind(now)
        .bind(id),
    )
    .await
    .map(|_| ())
}

/// Filters of the log list.
#[derive(Debug, Default)]
pub struct Filter {
    pub sync_type: Option<String>,
    pub status: Option<String>,
}

/// A page of the tenant's runs, newest first, and the total.
pub async fn list(
    db: &Db,
    tenant_id: i64,
    f: &Filter,
    offset: i64,
    limit: i64,
) -> DbResult<(Vec<LogRow>, i64)> {
    let mut w = query(" WHERE tenant_id = ?").bind(tenant_id);
    if let Some(t) = &f.sync_type {
        w.push_sql(" AND sync_type = ?").push_bind(t.as_str());
    }
    if let Some(s) = &f.status {
        w.push_sql(" AND status = ?").push_bind(s.as_str());
    }
    let mut c = query("SELECT COUNT(*) FROM wework_sync_log");
    c.append(&w);
    let total = db.fetch_i64(c).await?;
    let mut p = query(format!("SELECT {COLUMNS} FROM wework_sync_log"));
    p.append(&w);
    p.push_sql(" ORDER BY id DESC LIMIT ? OFFSET ?")
        .push_bind(limit)
        .push_bind(offset);
    Ok((db.fetch_all(p).await?, total))
}

/// The latest run of a type.
pub async fn latest(db: &Db, tenant_id: i64, sync_type: &str) -> DbResult<Option<LogRow>> {
    db.fetch_optional(
        query(format!("SELECT {COLUMNS} FROM wework_sync_log WHERE tenant_id = ? AND sync_type = ? ORDER BY id DESC LIMIT 1"))
            .bind(tenant_id)
            .bind(sync_type),
    )
    .await
}

//! The audit log: who changed what, when. Every write records a row in the same transaction as
//! the change, so the log cannot disagree with the data.

use scrm_db::{Db, DbResult, Tx, query};
use serde::Serialize;

use crate::auth::CurrentUser;
use crate::state::{iso, now_ms};

/// Record one change made by `actor`.
pub async fn record(
    tx: &mut Tx,
    actor: &CurrentUser,
    action: &str,
    target_type: &str,
    target_id: impl ToString,
    detail: serde_json::Value,
) -> DbResult<()> {
    record_raw(
        tx,
        actor.tenant_id,
        Some((actor.id, actor.username.as_str())),
        action,
        target_type,
        &target_id.to_string(),
        detail,
        actor.request_id.as_deref(),
    )
    .await
}

/// Record a change made by the system or the command line (no signed-in user).
#[allow(clippy::too_many_arguments)]
pub async fn record_raw(
    tx: &mut Tx,
    tenant_id: i64,
    actor: Option<(i64, &str)>,
    action: &str,
    target_type: &str,
    target_id: &str,
    detail: serde_json::Value,
    request_id: Option<&str>,
) -> DbResult<()> {
    tx.execute(
        query(
            "INSERT INTO audit_log (tenant_id, user_id, username, action, target_type, target_id, detail, request_id, created_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(tenant_id)
        .bind(actor.map(|a| a.0))
        .bind(actor.map(|a| a.1))
        .bind(action)
        .bind(target_type)
        .bind(target_id)
        .bind(detail.to_string())
        .bind(request_id)
        .bind(now_ms()),
    )
    .await
    .map(|_| ())
}

#[derive(sqlx::FromRow)]
struct Row {
    id: i64,
    user_id: Option<i64>,
    username: Option<String>,
    action: String,
    target_type: String,
    target_id: Option<String>,
    detail: Option<String>,
    request_id: Option<String>,
    created_at: i64,
}

/// An audit entry as the API shows it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuditEntry {
    pub id: i64,
    pub user_id: Option<i64>,
    pub username: Option<String>,
    pub action: String,
    pub target_type: String,
    pub target_id: Option<String>,
    pub detail: serde_json::Value,
    pub request_id: Option<String>,
    pub create_time: String,
}

/// Filters for the audit log.
#[derive(Debug, Default)]
pub struct Filter {
    pub action: Option<String>,
    pub user_id: Option<i64>,
    pub target_type: Option<String>,
}

/// A page of a tenant's audit log, newest first, and the total.
pub async fn list(
    db: &Db,
    tenant_id: i64,
    filter: &Filter,
    offset: i64,
    limit: i64,
) -> DbResult<(Vec<AuditEntry>, i64)> {
    let mut where_ = query(" WHERE tenant_id = ?").bind(tenant_id);
    if let Some(a) = &filter.action {
        where_.push_sql(" AND action = ?").push_bind(a.as_str());
    }
    if let Some(u) = filter.user_id {
        where_.push_sql(" AND user_id = ?").push_bind(u);
    }
    if let Some(t) = &filter.target_type {
        where_
            .push_sql(" AND target_type = ?")
            .push_bind(t.as_str());
    }
    let mut count = query("SELECT COUNT(*) FROM audit_log");
    count.append(&where_);
    let total = db.fetch_i64(count).await?;
    let mut page = query(
        "SELECT id, user_id, username, action, target_type, target_id, detail, request_id, created_at FROM audit_log",
    );
    page.append(&where_);
    page.push_sql(" ORDER BY id DESC LIMIT ? OFFSET ?")
        .push_bind(limit)
        .push_bind(offset);
    let rows: Vec<Row> = db.fetch_all(page).await?;
    let entries = rows
        .into_iter()
        .map(|r| AuditEntry {
            id: r.id,
            user_id: r.user_id,
            username: r.username,
            action: r.action,
            target_type: r.target_type,
            target_id: r.target_id,
            detail: r
                .detail
                .and_then(|d| serde_json::from_str(&d).ok())
                .unwrap_or(serde_json::Value::Null),
            request_id: r.request_id,
            create_time: iso(r.created_at),
        })
        .collect();
    Ok((entries, total))
}

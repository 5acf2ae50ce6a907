//! The customer timeline: one row per thing that happened to a customer (added, tagged, group
//! joins, follow-ups, transfers, stage changes, sends by other modules), written in the same
//! transaction as the change so the portrait never disagrees with the data.

use scrm_db::{Db, DbResult, Tx, query};
use serde::Serialize;

use crate::state::{iso, now_ms};

/// Timeline entry kinds.
pub mod kind {
    pub const ADDED: &str = "added";
    pub const UPDATED: &str = "updated";
    pub const TAGGED: &str = "tagged";
    pub const UNTAGGED: &str = "untagged";
    pub const FOLLOW_UP: &str = "follow_up";
    pub const STAGE: &str = "stage";
    pub const TRANSFER: &str = "transfer";
    pub const BLACKLIST: &str = "blacklist";
    pub const GROUP_JOIN: &str = "group_join";
    pub const GROUP_LEAVE: &str = "group_leave";
    /// Messages sent by us (group sends, SOP steps); written by those modules.
    pub const MESSAGE: &str = "message";
    pub const SOP_STEP: &str = "sop_step";
}

/// Record one entry for a customer. Other modules (sends, SOPs) call this too.
pub async fn record(
    tx: &mut Tx,
    tenant_id: i64,
    customer_id: i64,
    kind: &str,
    summary: &str,
    detail: serde_json::Value,
) -> DbResult<()> {
    let summary: String = summary.chars().take(255).collect();
    tx.execute(
        query(
            "INSERT INTO customer_timeline (tenant_id, customer_id, kind, summary, detail, occurred_at) \
             VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(tenant_id)
        .bind(customer_id)
        .bind(kind)
        .bind(summary)
        .bind(detail.to_string())
        .bind(now_ms()),
    )
    .await
    .map(|_| ())
}

#[derive(sqlx::FromRow)]
struct Row {
    id: i64,
    kind: String,
    summary: String,
    detail: Option<String>,
    occurred_at: i64,
}

/// A timeline entry as the API shows it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Entry {
    pub id: i64,
    pub kind: String,
    pub summary: String,
    pub detail: serde_json::Value,
    pub time: String,
}

/// A page of a customer's timeline, newest first, and its total.
pub async fn list(
    db: &Db,
    tenant_id: i64,
    customer_id: i64,
    offset: i64,
    limit: i64,
) -> DbResult<(Vec<Entry>, i64)> {
    let total = db
        .fetch_i64(
            query("SELECT COUNT(*) FROM customer_timeline WHERE tenant_id = ? AND customer_id = ?")
                .bind(tenant_id)
                .bind(customer_id),
        )
        .await?;
    let rows: Vec<Row> = db
        .fetch_all(
            query(
                "SELECT id, kind, summary, detail, occurred_at FROM customer_timeline \
                 WHERE tenant_id = ? AND customer_id = ? ORDER BY id DESC LIMIT ? OFFSET ?",
            )
            .bind(tenant_id)
            .bind(customer_id)
            .bind(limit)
            .bind(offset),
        )
        .await?;
    let list = rows
        .into_iter()
        .map(|r| Entry {
            id: r.id,
            kind: r.kind,
            summary: r.summary,
            detail: r
                .detail
                .and_then(|d| serde_json::from_str(&d).ok())
                .unwrap_or(serde_json::Value::Null),
            time: iso(r.occurred_at),
        })
        .collect();
    Ok((list, total))
}

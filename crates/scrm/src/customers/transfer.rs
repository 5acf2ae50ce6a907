//! Assignment, transfer and inheritance of customers.
//!
//! `assign` sets the owner at once (a local decision). `on_job` (在职继承, WeCom
//! transfer_customer) and `resigned` (离职继承, resigned/transfer_customer) are WeCom operations:
//! the record starts `waiting`; the job that calls WeCom moves it to `in_progress`, and polling
//! transfer_result to `done` (the owner changes then) or `failed` with WeCom's reason, through
//! [`set_status`].
//!
//! The WeCom side runs as jobs enqueued with the record ([`super::transfer_jobs`]).

use axum::extract::State;
use axum::http::Method;
use scrm_db::{DbResult, Tx, query};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{cache, check_ids, customer_not_found, staff, store, timeline, transfer_jobs};
use crate::audit;
use crate::auth::CurrentUser;
use crate::auth::permissions as perm;
use crate::events;
use crate::http::envelope::{ListPage, Paging, Reply, created, ok};
use crate::http::error::{ApiError, ApiResult};
use crate::http::extract::{ApiJson, ApiPath, ApiQuery};
use crate::http::routes::{Access, Routes};
use crate::state::{AppState, iso, now_ms};

pub fn routes(state: &AppState) -> Routes {
    use Method as M;
    Routes::new(state, "customers")
        .route(
            M::POST,
            "/api/v1/customers/{id}/transfer",
            Access::Permission(perm::CUSTOMER_TRANSFER),
            "Assign or transfer a customer to a staff member",
            transfer_one,
        )
        .route(
            M::POST,
            "/api/v1/customers/transfer",
            Access::Permission(perm::CUSTOMER_TRANSFER),
            "Assign or transfer many customers",
            transfer_many,
        )
        .route(
            M::GET,
            "/api/v1/customers/transfers",
            Access::Permission(perm::CUSTOMER_VIEW),
            "Transfer records (status waiting, in_progress, done, failed)",
            list,
        )
}

/// Transfer kinds.
pub const KINDS: &[&str] = &["assign", "on_job", "resigned"];
/// Transfer statuses.
pub const STATUSES: &[&str] = &["waiting", "in_progress", "done", "failed"];

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct TransferBody {
    customer_ids: Option<Vec<i64>>,
    to_staff_id: Option<i64>,
    kind: Option<String>,
    reason: Option<String>,
}

/// A transfer record as shown.
#[derive(Debug, Serialize, sqlx::FromRow)]
#[serde(rename_all = "camelCase")]
pub struct TransferRow {
    pub id: i64,
    pub customer_id: i64,
    pub kind: String,
    pub from_staff_id: Option<i64>,
    pub to_staff_id: i64,
    pub status: String,
    pub reason: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

struct Checked {
    to: i64,
    kind: String,
    reason: Option<String>,
}

async fn check(tx: &mut Tx, tenant_id: i64, b: &TransferBody) -> ApiResult<Checked> {
    let to = b
        .to_staff_id
        .ok_or_else(|| ApiError::field("toStaffId", "is required"))?;
    if !store::staff_exists(tx, tenant_id, to).await? {
        return Err(ApiError::field("toStaffId", "no such staff member"));
    }
    let kind = b.kind.clone().unwrap_or_else(|| "assign".into());
    if !KINDS.contains(&kind.as_str()) {
        return Err(ApiError::field("kind", "one of assign, on_job, resigned"));
    }
    let reason = b
        .reason
        .as_deref()
        .map(str::trim)
        .filter(|r| !r.is_empty())
        .map(str::to_string);
    if reason.as_ref().is_some_and(|r| r.chars().count() > 255) {
        return Err(ApiError::field("reason", "at most 255 characters"));
    }
    Ok(Checked { to, kind, reason })
}

/// Record a transfer of one customer (and apply it when it is an assignment); returns its id
/// and the owner it is handed over from.
async fn transfer(
    tx: &mut Tx,
    user: &CurrentUser,
    customer_id: i64,
    c: &Checked,
    now: i64,
) -> ApiResult<(i64, Option<i64>)> {
    let row = store::lock(tx, user.tenant_id, customer_id)
        .await?
        .ok_or_else(customer_not_found)?;
    let status = if c.kind == "assign" {
        "done"
    } else {
        "waiting"
    };
    let id = tx
        .insert_id(
            query("INSERT INTO customer_transfer (tenant_id, customer_id, kind, from_staff_id, to_staff_id, status, reason, created_by, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
                .bind(user.tenant_id)
                .bind(customer_id)
                .bind(c.kind.as_str())
                .bind(row.follow_user_id)
                .bind(c.to)
                .bind(status)
                .bind(c.reason.as_deref())
                .bind(user.id)
                .bind(now)
                .bind(now),
        )
        .await?;
    if status == "done" {
        apply(
            tx,
            user.tenant_id,
            customer_id,
            row.follow_user_id,
            c.to,
            &c.kind,
            now,
        )
        .await?;
    }
    Ok((id, row.follow_user_id))
}

/// The owner changes: follow relation, version, timeline, `customer.transferred`.
async fn apply(
    tx: &mut Tx,
    tenant_id: i64,
    customer_id: i64,
    from: Option<i64>,
    to: i64,
    kind: &str,
    now: i64,
) -> DbResult<()> {
    tx.execute(query("UPDATE customer SET follow_user_id = ?, version = version + 1, updated_at = ? WHERE tenant_id = ? AND id = ?").bind(to).bind(now).bind(tenant_id).bind(customer_id)).await?;
    staff::ensure_follow(tx, tenant_id, customer_id, to, now).await?;
    timeline::record(
        tx,
        tenant_id,
        customer_id,
        timeline::kind::TRANSFER,
        &format!(
            "owner {} → {to} ({kind})",
            from.map(|f| f.to_string()).unwrap_or_else(|| "-".into())
        ),
        json!({"from": from, "to": to, "kind": kind}),
    )
    .await?;
    events::emit(
        tx,
        tenant_id,
        events::kind::CUSTOMER_TRANSFERRED,
        customer_id,
        json!({"customerId": customer_id, "fromStaffId": from, "toStaffId": to, "kind": kind}),
    )
    .await
}

/// Make `to_staff_id` the owner of a customer now, for code that decided it outside this
/// module's routes (operation's assign tasks and SOP assign steps, after WeCom accepted
/// transfer_customer): a `done` transfer record of `kind` with `reason`, the owner change, the
/// follow relation, the timeline entry and `customer.transferred`, in the caller's transaction.
/// Returns the transfer id; `None` when the customer does not exist (or was deleted) or the
/// staff member is already its owner. Callers invalidate the customer cache after commit
/// ([`super::cache::invalidate`]).
#[allow(clippy::too_many_arguments)]
pub async fn assign_owner(
    tx: &mut Tx,
    tenant_id: i64,
    customer_id: i64,
    to_staff_id: i64,
    kind: &str,
    reason: Option<&str>,
    created_by: Option<i64>,
    now: i64,
) -> DbResult<Option<i64>> {
    let Some(row) = store::lock(tx, tenant_id, customer_id).await? else {
        return Ok(None);
    };
    if row.follow_user_id == Some(to_staff_id) {
        return Ok(None);
    }
    let kind = if KINDS.contains(&kind) {
        kind
    } else {
        "assign"
    };
    let id = tx
        .insert_id(
            query("INSERT INTO customer_transfer (tenant_id, customer_id, kind, from_staff_id, to_staff_id, status, reason, created_by, created_at, updated_at) VALUES (?, ?, ?, ?, ?, 'done', ?, ?, ?, ?)")
                .bind(tenant_id)
                .bind(customer_id)
                .bind(kind)
                .bind(row.follow_user_id)
                .bind(to_staff_id)
                .bind(reason)
                .bind(created_by)
                .bind(now)
                .bind(now),
        )
        .await?;
    apply(
        tx,
        tenant_id,
        customer_id,
        row.follow_user_id,
        to_staff_id,
        kind,
        now,
    )
    .await?;
    Ok(Some(id))
}

/// Move a transfer on (the WeCom job and the transfer_result poll call this); `done` applies it.
pub async fn set_status(
    tx: &mut Tx,
    tenant_id: i64,
    transfer_id: i64,
    status: &str,
    reason: Option<&str>,
    now: i64,
) -> DbResult<()> {
    let row: Option<TransferRow> = tx
        .fetch_optional(query("SELECT id, customer_id, kind, from_staff_id, to_staff_id, status, reason, created_at, updated_at FROM customer_transfer WHERE tenant_id = ? AND id = ?").bind(tenant_id).bind(transfer_id))
        .await?;
    let Some(row) = row else {
        return Err(scrm_db::DbError::NotFound);
    };
    if row.status == "done" || row.status == "failed" {
        return Ok(());
    }
    // Conditional: of two pollers settling the same transfer, one applies it.
    let moved = tx.execute(query("UPDATE customer_transfer SET status = ?, reason = COALESCE(?, reason), updated_at = ? WHERE tenant_id = ? AND id = ? AND status NOT IN ('done', 'failed')").bind(status).bind(reason).bind(now).bind(tenant_id).bind(transfer_id)).await?.rows_affected;
    if moved > 0 && status == "done" {
        apply(
            tx,
            tenant_id,
            row.customer_id,
            row.from_staff_id,
            row.to_staff_id,
            &row.kind,
            now,
        )
        .await?;
    }
    Ok(())
}

async fn transfer_one(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiPath(id): ApiPath<i64>,
    ApiJson(b): ApiJson<TransferBody>,
) -> ApiResult<Reply<serde_json::Value>> {
    if b.customer_ids.is_some() {
        return Err(ApiError::field(
            "customerIds",
            "use POST /api/v1/customers/transfer for many",
        ));
    }
    let now = now_ms();
    let mut tx = state.db.begin().await?;
    store::version_tx_check(&mut tx, user.tenant_id, id).await?;
    let c = check(&mut tx, user.tenant_id, &b).await?;
    let (tid, from) = transfer(&mut tx, &user, id, &c, now).await?;
    if c.kind != "assign" {
        transfer_jobs::enqueue(&state.jobs, &mut tx, user.tenant_id, &[(tid, from)]).await?;
    }
    audit::record(
        &mut tx,
        &user,
        "customer.transfer",
        "customer",
        id,
        json!({"transferId": tid, "toStaffId": c.to, "kind": c.kind}),
    )
    .await?;
    tx.commit().await?;
    cache::invalidate(&state, user.tenant_id, &[id]).await;
    Ok(created(
        json!({"transferId": tid, "customerId": id, "status": if c.kind == "assign" { "done" } else { "waiting" }}),
    ))
}

pub(crate) async fn transfer_many(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiJson(b): ApiJson<TransferBody>,
) -> ApiResult<Reply<serde_json::Value>> {
    let ids = check_ids("customerIds", b.customer_ids.clone(), 1000)?;
    let now = now_ms();
    let mut tx = state.db.begin().await?;
    let c = check(&mut tx, user.tenant_id, &b).await?;
    let found = store::existing_ids(&mut tx, user.tenant_id, &ids).await?;
    let mut transfers = Vec::new();
    let mut started = Vec::new();
    for id in &found {
        let (tid, from) = transfer(&mut tx, &user, *id, &c, now).await?;
        transfers.push(tid);
        started.push((tid, from));
    }
    if c.kind != "assign" {
        transfer_jobs::enqueue(&state.jobs, &mut tx, user.tenant_id, &started).await?;
    }
    audit::record(
        &mut tx,
        &user,
        "customer.transfer.batch",
        "customer",
        0,
        json!({"customerIds": found, "toStaffId": c.to, "kind": c.kind}),
    )
    .await?;
    tx.commit().await?;
    cache::invalidate(&state, user.tenant_id, &found).await;
    let missing: Vec<i64> = ids.into_iter().filter(|i| !found.contains(i)).collect();
    Ok(created(
        json!({"transferIds": transfers, "notFound": missing}),
    ))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ListQuery {
    page: Option<i64>,
    size: Option<i64>,
    status: Option<String>,
    customer_id: Option<i64>,
}

/// A transfer in lists, with ISO times.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct TransferView {
    #[serde(flatten)]
    row: TransferRow,
    create_time: String,
    update_time: String,
}

async fn list(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> ApiResult<Reply<ListPage<TransferView>>> {
    let paging = Paging::new(q.page, q.size, 20, 200)?;
    let mut w = query(" WHERE tenant_id = ?").bind(user.tenant_id);
    if let Some(s) = &q.status {
        if !STATUSES.contains(&s.as_str()) {
            return Err(ApiError::field(
                "status",
                "one of waiting, in_progress, done, failed",
            ));
        }
        w.push_sql(" AND status = ?").push_bind(s.as_str());
    }
    if let Some(c) = q.customer_id {
        w.push_sql(" AND customer_id = ?").push_bind(c);
    }
    let (rows, total): (Vec<TransferRow>, i64) = paging
        .fetch(
            &state.db,
            "SELECT COUNT(*) FROM customer_transfer",
            "SELECT id, customer_id, kind, from_staff_id, to_staff_id, status, reason, created_at, updated_at FROM customer_transfer",
            &w,
            "id",
        )
        .await?;
    let list = rows
        .into_iter()
        .map(|row| TransferView {
            create_time: iso(row.created_at),
            update_time: iso(row.updated_at),
            row,
        })
        .collect();
    Ok(ok(ListPage {
        list,
        total,
        page: paging.page,
        size: paging.size,
    }))
}

//! Seed 000's batch tag (task type 2) and batch assign (task type 3): per customer, with its
//! result row moving PENDING → SUCCESS / FAILED. One job works through the PENDING rows 100 at
//! a time and reschedules itself, so a run stays short and a crash repeats at most one chunk —
//! harmless here, since marking a tag twice or re-requesting a transfer WeCom already started
//! (40129/40100) changes nothing.

use scrm_db::{Db, query};
use scrm_jobs::{JobContext, JobError, JobOutcome, NewJob};
use scrm_wecom::client::{MarkTagRequest, TransferCustomerRequest};
use serde_json::Value;

use super::engine::{TaskPayload, group};
use super::store::{self, TaskRow};
use crate::operation::wecom::{TenantWeCom, client_for};
use crate::state::AppState;

/// Job kind.
pub const ACTION: &str = "mass_task.action";
const CHUNK: i64 = 100;

/// The action job of a tag or assign task.
pub fn job(task: &TaskRow) -> Result<NewJob, scrm_jobs::JobsError> {
    Ok(NewJob::new(ACTION, &TaskPayload { task_id: task.id })?
        .tenant(task.tenant_id)
        .group(group(task.id))
        .unique_key(format!("mt:action:{}", task.id)))
}

/// WeCom ids of the tenant's tags (tags made in scrm and never pushed have none).
pub async fn wecom_tag_ids(
    db: &Db,
    tenant_id: i64,
    tag_ids: &[i64],
) -> scrm_db::DbResult<Vec<String>> {
    if tag_ids.is_empty() {
        return Ok(vec![]);
    }
    let mut q = query(
        "SELECT wecom_tag_id FROM tag WHERE tenant_id = ? AND wecom_tag_id IS NOT NULL AND id IN ",
    )
    .bind(tenant_id);
    q.push_in_list(tag_ids.iter().copied());
    let rows: Vec<(String,)> = db.fetch_all(q).await?;
    Ok(rows.into_iter().map(|r| r.0).collect())
}

/// Tag one customer in WeCom (as its owner) and locally. Returns WeCom's answer as text.
pub async fn tag_customer(
    state: &AppState,
    wecom: &TenantWeCom,
    tenant_id: i64,
    customer_id: i64,
    owner: &str,
    external_userid: &str,
    tag_ids: &[i64],
) -> anyhow::Result<String> {
    let wecom_ids = wecom_tag_ids(&state.db, tenant_id, tag_ids).await?;
    if !wecom_ids.is_empty() {
        wecom
            .app
            .mark_tag(&MarkTagRequest {
                userid: owner.to_string(),
                external_userid: external_userid.to_string(),
                add_tag: wecom_ids,
                remove_tag: vec![],
            })
            .await?;
    }
    let now = crate::state::now_ms();
    let mut tx = state.db.begin().await?;
    let known: Vec<i64> = {
        let unknown = crate::customers::tags::unknown_tags(&mut tx, tenant_id, tag_ids).await?;
        tag_ids
            .iter()
            .copied()
            .filter(|t| !unknown.contains(t))
            .collect()
    };
    crate::customers::tags::add_to_customer(&mut tx, tenant_id, customer_id, &known, None, now)
        .await?;
    tx.commit().await?;
    Ok("errcode 0 (mark_tag)".into())
}

#[derive(sqlx::FromRow)]
struct Pending {
    id: i64,
    customer_id: i64,
    external_userid: Option<String>,
    sender_userid: Option<String>,
}

/// `mass_task.action`: the next chunk of a tag or assign task.
pub async fn run_action(
    state: AppState,
    ctx: JobContext,
    p: Value,
) -> Result<JobOutcome, JobError> {
    let p: TaskPayload = serde_json::from_value(p)?;
    let Some(task) = store::task_by_id(&state.db, p.task_id).await? else {
        return Ok(JobOutcome::Done);
    };
    if task.status != super::status::PROCESSING || ctx.is_cancelled() {
        return Ok(JobOutcome::Done);
    }
    let wecom = client_for(&state, task.tenant_id)
        .await
        .map_err(JobError::retryable)?;
    let action: Value =
        serde_json::from_str(task.action.as_deref().unwrap_or("{}")).unwrap_or_default();
    let rows: Vec<Pending> = state
        .db
        .fetch_all(
            query(
                "SELECT id, customer_id, external_userid, sender_userid FROM t_group_send_result \
                 WHERE task_id = ? AND status = 'PENDING' ORDER BY id LIMIT ?",
            )
            .bind(task.id)
            .bind(CHUNK),
        )
        .await?;
    let now = ctx.now_ms();
    if rows.is_empty() {
        store::finish_if_done(&state.db, task.id, now).await?;
        return Ok(JobOutcome::Done);
    }
    let outcomes = match task.task_type {
        2 => tag_chunk(&state, &wecom, &task, &action, &rows).await,
        _ => assign_chunk(&state, &wecom, &task, &action, &rows).await,
    };
    for (id, outcome) in outcomes {
        let (st, err) = match outcome {
            Ok(()) => ("SUCCESS", None),
            Err(e) => ("FAILED", Some(e)),
        };
        state
            .db
            .execute(
                query("UPDATE t_group_send_result SET status = ?, error_message = ?, update_time = ? WHERE id = ? AND status = 'PENDING'")
                    .bind(st)
                    .bind(err)
                    .bind(now)
                    .bind(id),
            )
            .await?;
    }
    store::refresh_counts(&state.db, task.id, now).await?;
    Ok(JobOutcome::RetryAt(now))
}

fn ids_of(v: &Value, key: &str) -> Vec<i64> {
    v.get(key)
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_i64).collect())
        .unwrap_or_default()
}

async fn tag_chunk(
    state: &AppState,
    wecom: &TenantWeCom,
    task: &TaskRow,
    action: &Value,
    rows: &[Pending],
) -> Vec<(i64, Result<(), String>)> {
    let tag_ids = ids_of(action, "tagIds");
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let (Some(ext), Some(owner)) = (&r.external_userid, &r.sender_userid) else {
            out.push((r.id, Err("customer has no owner staff".to_string())));
            continue;
        };
        let res = tag_customer(
            state,
            wecom,
            task.tenant_id,
            r.customer_id,
            owner,
            ext,
            &tag_ids,
        )
        .await
        .map(|_| ())
        .map_err(|e| format!("{e:#}"));
        out.push((r.id, res));
    }
    out
}

/// The staff member an assign action names (`staffId`, or `staffUserid`) in the tenant:
/// (row id, WeCom userid).
pub async fn assignee(
    db: &Db,
    tenant_id: i64,
    action: &Value,
) -> scrm_db::DbResult<Option<(i64, String)>> {
    let mut q = query("SELECT id, userid FROM staff WHERE tenant_id = ?").bind(tenant_id);
    match (
        action.get("staffId").and_then(Value::as_i64),
        action.get("staffUserid").and_then(Value::as_str),
    ) {
        (Some(id), _) => q.push_sql(" AND id = ?").push_bind(id),
        (None, Some(userid)) => q.push_sql(" AND userid = ?").push_bind(userid.to_string()),
        (None, None) => return Ok(None),
    };
    db.fetch_optional(q).await
}

/// A customer refused by transfer_customer (its per-customer errcode).
#[derive(Debug, thiserror::Error)]
#[error("transfer_customer errcode {0}")]
pub struct TransferRefused(pub i64);

/// Assign one customer to `to` (row id, userid): transfer_customer in WeCom from its owner
/// `owner` (unless `to` already owns it), then the local owner, with a transfer record, through
/// [`crate::customers::transfer::assign_owner`]. Returns WeCom's answer. Errors are a
/// [`scrm_wecom::WeComError`], a [`TransferRefused`] or a database error.
#[allow(clippy::too_many_arguments)]
pub async fn assign_customer(
    state: &AppState,
    wecom: &TenantWeCom,
    tenant_id: i64,
    customer_id: i64,
    owner: &str,
    external_userid: &str,
    to: &(i64, String),
    reason: &str,
) -> anyhow::Result<Value> {
    let answer = if owner == to.1 {
        serde_json::json!({"skipped": "already the owner"})
    } else {
        let list = wecom
            .app
            .transfer_customer(&TransferCustomerRequest {
                handover_userid: owner.to_string(),
                takeover_userid: to.1.clone(),
                external_userid: vec![external_userid.to_string()],
                transfer_success_msg: None,
            })
            .await?;
        // 40129: a transfer of this customer is already under way; 40100: WeCom already has
        // this takeover — both leave the customer going to `to`.
        match list.first().map(|c| c.errcode) {
            Some(0) | Some(40129) | Some(40100) | None => {}
            Some(code) => return Err(TransferRefused(code).into()),
        }
        serde_json::json!({"errcode": 0, "customer": list, "takeover": to.1})
    };
    let mut tx = state.db.begin().await?;
    let transfer = crate::customers::transfer::assign_owner(
        &mut tx,
        tenant_id,
        customer_id,
        to.0,
        "on_job",
        Some(reason),
        None,
        crate::state::now_ms(),
    )
    .await?;
    tx.commit().await?;
    crate::customers::cache::invalidate(state, tenant_id, &[customer_id]).await;
    let mut answer = answer;
    answer["transferId"] = serde_json::json!(transfer);
    Ok(answer)
}

async fn assign_chunk(
    state: &AppState,
    wecom: &TenantWeCom,
    task: &TaskRow,
    action: &Value,
    rows: &[Pending],
) -> Vec<(i64, Result<(), String>)> {
    let to = match assignee(&state.db, task.tenant_id, action).await {
        Ok(Some(to)) => to,
        Ok(None) => {
            return rows
                .iter()
                .map(|r| (r.id, Err("no staff to assign to".to_string())))
                .collect();
        }
        Err(e) => {
            return rows
                .iter()
                .map(|r| (r.id, Err(format!("database: {e}"))))
                .collect();
        }
    };
    let reason = format!("mass task {}", task.id);
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let (Some(ext), Some(owner)) = (&r.external_userid, &r.sender_userid) else {
            out.push((r.id, Err("customer has no owner staff".to_string())));
            continue;
        };
        let res = assign_customer(
            state,
            wecom,
            task.tenant_id,
            r.customer_id,
            owner,
            ext,
            &to,
            &reason,
        )
        .await
        .map(|_| ())
        .map_err(|e| format!("{e:#}"));
        out.push((r.id, res));
    }
    out
}

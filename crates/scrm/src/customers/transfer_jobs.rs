//! 在职继承 / 离职继承 through WeCom, as jobs.
//!
//! A transfer of kind `on_job` or `resigned` is recorded `waiting` with a
//! `customers.wecom_transfer` job in the same transaction (one job per handover member, up to
//! 100 customers: WeCom's batch). The job calls transfer_customer (or resigned/…): customers
//! WeCom accepted move to `in_progress` and a `customers.transfer_poll` job follows them;
//! refused ones are `failed` with WeCom's errcode and meaning. The poll job reads
//! transfer_result for the (handover, takeover) pair every `customers.transfer_poll_ms`
//! (tenant setting, default 10 minutes; WeCom takes over after 24 hours): status 1 is `done` (the
//! owner changes in scrm then), 2 keeps waiting, 3/4/5 are `failed` with the reason.

use std::collections::{BTreeMap, HashMap};

use scrm_db::{Db, Tx, query};
use scrm_jobs::{JobContext, JobError, JobOutcome, Jobs, NewJob};
use scrm_wecom::client::{TransferCustomerRequest, TransferStatus};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::push::{Fail, wecom_for};
use super::transfer::set_status;
use crate::http::error::ApiResult;
use crate::state::AppState;

/// Job kind: start transfers in WeCom.
pub const TRANSFER: &str = "customers.wecom_transfer";
/// Job kind: follow started transfers with transfer_result.
pub const POLL: &str = "customers.transfer_poll";
/// Default time between two looks at transfer_result.
pub(crate) const POLL_MS: i64 = 600_000;
/// WeCom's batch.
const BATCH: usize = 100;

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct TransferPayload {
    transfer_ids: Vec<i64>,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PollPayload {
    kind: String,
    from_staff_id: i64,
    to_staff_id: i64,
}

/// Enqueue the WeCom calls of new transfers (`(transfer id, handover staff id)`), batched by
/// handover member, in the caller's transaction.
pub async fn enqueue(
    jobs: &Jobs,
    tx: &mut Tx,
    tenant_id: i64,
    started: &[(i64, Option<i64>)],
) -> ApiResult<()> {
    let mut by_from: BTreeMap<Option<i64>, Vec<i64>> = BTreeMap::new();
    for (id, from) in started {
        by_from.entry(*from).or_default().push(*id);
    }
    for ids in by_from.values() {
        for chunk in ids.chunks(BATCH) {
            let job = NewJob::new(
                TRANSFER,
                &TransferPayload {
                    transfer_ids: chunk.to_vec(),
                },
            )
            .map_err(anyhow::Error::new)?
            .tenant(tenant_id);
            jobs.enqueue(tx, job).await.map_err(anyhow::Error::new)?;
        }
    }
    Ok(())
}

async fn poll_ms(db: &Db, tenant_id: i64) -> i64 {
    crate::operation::settings::stored(db, tenant_id, "customers.transfer_poll_ms")
        .await
        .ok()
        .flatten()
        .filter(|v| *v > 0)
        .unwrap_or(POLL_MS)
}

#[derive(sqlx::FromRow)]
struct Pending {
    id: i64,
    kind: String,
    from_staff_id: Option<i64>,
    to_staff_id: i64,
    external_userid: Option<String>,
    from_userid: Option<String>,
    to_userid: Option<String>,
}

fn reason(text: &str) -> String {
    text.chars().take(255).collect()
}

/// Fail every transfer of `ids` that is not settled yet.
async fn fail_all(
    db: &Db,
    tenant_id: i64,
    ids: &[i64],
    why: &str,
    now: i64,
) -> Result<(), JobError> {
    let mut tx = db.begin().await?;
    for id in ids {
        set_status(&mut tx, tenant_id, *id, "failed", Some(&reason(why)), now).await?;
    }
    tx.commit().await?;
    Ok(())
}

/// What a WeCom failure means for the job, after the records are updated.
async fn failed(
    db: &Db,
    ctx: &JobContext,
    tenant_id: i64,
    ids: &[i64],
    f: Fail,
) -> Result<JobOutcome, JobError> {
    if f.transient && !ctx.is_last_attempt() {
        return Err(JobError::retryable(f.message));
    }
    fail_all(db, tenant_id, ids, &f.message, ctx.now_ms()).await?;
    Err(JobError::permanent(f.message))
}

/// `customers.wecom_transfer`: start the waiting transfers of the payload in WeCom.
pub async fn run_transfer(
    state: AppState,
    ctx: JobContext,
    p: Value,
) -> Result<JobOutcome, JobError> {
    let p: TransferPayload = serde_json::from_value(p)?;
    let tenant_id = ctx
        .tenant_id
        .ok_or_else(|| JobError::permanent("a transfer job needs a tenant"))?;
    if p.transfer_ids.is_empty() {
        return Ok(JobOutcome::Done);
    }
    let mut q = query(
        "SELECT t.id, t.kind, t.from_staff_id, t.to_staff_id, c.external_userid, \
         f.userid AS from_userid, s.userid AS to_userid FROM customer_transfer t \
         LEFT JOIN customer c ON c.tenant_id = t.tenant_id AND c.id = t.customer_id \
         LEFT JOIN staff f ON f.tenant_id = t.tenant_id AND f.id = t.from_staff_id \
         LEFT JOIN staff s ON s.tenant_id = t.tenant_id AND s.id = t.to_staff_id \
         WHERE t.tenant_id = ? AND t.status = 'waiting' AND t.id IN ",
    )
    .bind(tenant_id);
    q.push_in_list(p.transfer_ids.iter().copied());
    q.push_sql(" ORDER BY t.id");
    let rows: Vec<Pending> = state.db.fetch_all(q).await?;
    let Some(first) = rows.first() else {
        return Ok(JobOutcome::Done);
    };
    let now = ctx.now_ms();
    let (Some(from), Some(to)) = (first.from_userid.clone(), first.to_userid.clone()) else {
        let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
        let why = if first.from_userid.is_none() {
            "the customer has no owner to hand over from"
        } else {
            "the takeover staff member is unknown"
        };
        fail_all(&state.db, tenant_id, &ids, why, now).await?;
        return Ok(JobOutcome::Done);
    };
    let (kind, from_id, to_id) = (first.kind.clone(), first.from_staff_id, first.to_staff_id);
    let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
    let wecom = match wecom_for(&state, tenant_id).await {
        Ok(w) => w,
        Err(f) => return failed(&state.db, &ctx, tenant_id, &ids, f).await,
    };
    let by_ext: HashMap<String, i64> = rows
        .iter()
        .filter_map(|r| r.external_userid.clone().map(|e| (e, r.id)))
        .collect();
    let req = TransferCustomerRequest {
        handover_userid: from,
        takeover_userid: to,
        external_userid: by_ext.keys().cloned().collect(),
        transfer_success_msg: None,
    };
    let answer = if kind == "resigned" {
        wecom.app.resigned_transfer_customer(&req).await
    } else {
        wecom.app.transfer_customer(&req).await
    };
    let results = match answer {
        Ok(r) => r,
        Err(e) => return failed(&state.db, &ctx, tenant_id, &ids, e.into()).await,
    };
    let mut tx = state.db.begin().await?;
    let mut started = 0;
    for r in &results {
        let Some(id) = by_ext.get(&r.external_userid) else {
            continue;
        };
        // 40129: WeCom is already transferring it; the poll settles it either way.
        let (status, why) = match r.errcode {
            0 | 40129 => ("in_progress", None),
            code => (
                "failed",
                Some(reason(&format!(
                    "WeCom errcode {code} ({})",
                    scrm_wecom::client::error::errcode_meaning(code).unwrap_or("unknown errcode")
                ))),
            ),
        };
        if status == "in_progress" {
            started += 1;
        }
        set_status(&mut tx, tenant_id, *id, status, why.as_deref(), now).await?;
    }
    if started > 0
        && let Some(from_id) = from_id
    {
        let poll = NewJob::new(
            POLL,
            &PollPayload {
                kind,
                from_staff_id: from_id,
                to_staff_id: to_id,
            },
        )?
        .tenant(tenant_id)
        .run_at(now + poll_ms(&state.db, tenant_id).await)
        .unique_key(format!("transfer-poll:{}", ctx.id));
        ctx.jobs().enqueue(&mut tx, poll).await?;
    }
    tx.commit().await?;
    Ok(JobOutcome::Done)
}

#[derive(sqlx::FromRow)]
struct InProgress {
    id: i64,
    external_userid: Option<String>,
}

/// `customers.transfer_poll`: settle the pair's started transfers from transfer_result.
pub async fn run_poll(state: AppState, ctx: JobContext, p: Value) -> Result<JobOutcome, JobError> {
    let p: PollPayload = serde_json::from_value(p)?;
    let tenant_id = ctx
        .tenant_id
        .ok_or_else(|| JobError::permanent("a poll job needs a tenant"))?;
    let rows: Vec<InProgress> = state
        .db
        .fetch_all(
            query(
                "SELECT t.id, c.external_userid FROM customer_transfer t \
                 LEFT JOIN customer c ON c.tenant_id = t.tenant_id AND c.id = t.customer_id \
                 WHERE t.tenant_id = ? AND t.status = 'in_progress' AND t.kind = ? \
                 AND t.from_staff_id = ? AND t.to_staff_id = ? ORDER BY t.id",
            )
            .bind(tenant_id)
            .bind(p.kind.as_str())
            .bind(p.from_staff_id)
            .bind(p.to_staff_id),
        )
        .await?;
    if rows.is_empty() {
        return Ok(JobOutcome::Done);
    }
    let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
    let users: Vec<(i64, String)> = {
        let mut q =
            query("SELECT id, userid FROM staff WHERE tenant_id = ? AND id IN ").bind(tenant_id);
        q.push_in_list([p.from_staff_id, p.to_staff_id]);
        state.db.fetch_all(q).await?
    };
    let userid = |id: i64| users.iter().find(|u| u.0 == id).map(|u| u.1.clone());
    let (Some(from), Some(to)) = (userid(p.from_staff_id), userid(p.to_staff_id)) else {
        fail_all(
            &state.db,
            tenant_id,
            &ids,
            "staff member no longer known",
            ctx.now_ms(),
        )
        .await?;
        return Ok(JobOutcome::Done);
    };
    let wecom = match wecom_for(&state, tenant_id).await {
        Ok(w) => w,
        Err(f) => return failed(&state.db, &ctx, tenant_id, &ids, f).await,
    };
    let answer = if p.kind == "resigned" {
        wecom.app.resigned_transfer_result_all(&from, &to).await
    } else {
        wecom.app.transfer_result_all(&from, &to).await
    };
    let statuses: HashMap<String, TransferStatus> = match answer {
        Ok(list) => list
            .into_iter()
            .map(|s| (s.external_userid.clone(), s))
            .collect(),
        Err(e) => return failed(&state.db, &ctx, tenant_id, &ids, e.into()).await,
    };
    let now = ctx.now_ms();
    let mut tx = state.db.begin().await?;
    let mut open = 0;
    for r in &rows {
        let Some(s) = r.external_userid.as_ref().and_then(|e| statuses.get(e)) else {
            open += 1;
            continue;
        };
        let (status, why) = match s.status {
            1 => ("done", None),
            3 => (
                "failed",
                Some("customer refused the transfer (transfer_result status 3)"),
            ),
            4 => (
                "failed",
                Some("the takeover member reached the customer limit (transfer_result status 4)"),
            ),
            5 => (
                "failed",
                Some("WeCom has no record of the transfer (transfer_result status 5)"),
            ),
            _ => {
                open += 1;
                tx.execute(
                    query("UPDATE customer_transfer SET takeover_time = ? WHERE tenant_id = ? AND id = ?")
                        .bind(s.takeover_time * 1000)
                        .bind(tenant_id)
                        .bind(r.id),
                )
                .await?;
                continue;
            }
        };
        set_status(&mut tx, tenant_id, r.id, status, why, now).await?;
    }
    tx.commit().await?;
    if open == 0 {
        return Ok(JobOutcome::Done);
    }
    Ok(JobOutcome::RetryAt(
        now + poll_ms(&state.db, tenant_id).await,
    ))
}

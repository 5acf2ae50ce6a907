//! Device accounts as senders of seed 004's group sends, beside WeCom members.
//!
//! A group send may name several sender accounts (`senderAccountIds`, beside the seed's
//! `senderAccountId`), of both providers. When it starts, each target customer gets one sender:
//! its owner if the owner is one of the chosen WeCom members (the official API, a batch of
//! add_msg_template as before), else the chosen device account a traffic pool handed the customer
//! to (its latest done assignment) if the customer is its friend, else the first chosen device
//! account that has the customer as a friend (a friend linked to the customer:
//! `PUT …/friends/{wxid}/customer`), else the result is FAILED with the reason. A customer sent through a device account gets one durable gateway
//! command (spaced per account by the configured random gap, seed 002's 3-8 s, as scheduling in
//! the job engine), recorded in the start job's transaction; the result stays SUBMITTED until the
//! gateway acknowledges the command, and becomes SUCCESS or FAILED (with the device's reason)
//! in the transaction that records the acknowledgement — once, however often the command was
//! sent. The task's final status (COMPLETED / PARTIAL_SUCCESS / FAILED) is computed over the
//! results of both providers by the engine's `finish_if_done`.

use axum::http::StatusCode;
use scrm_db::{Db, DbResult, Tx, query};
use scrm_jobs::{JobContext, JobError, JobOutcome, NewJob};
use scrm_wecom::device::command;
use serde_json::{Value, json};

use super::commands::{CommandRow, NewCommand, record};
use super::provider::{Capability, Provider, SenderAccount, resolve};
use crate::http::error::FieldError;
use crate::http::{ApiError, ApiResult};
use crate::operation::mass::store::{self, TaskRow};
use crate::operation::mass::{result, status};
use crate::state::{AppState, now_ms};

/// The `source` of device commands sent for a group send (`source_id` = the result row).
pub const SOURCE: &str = "group_send";

/// Job kind: recompute a group send's status after a device result became final.
pub const FINISH: &str = "devices.group_send.finish";

/// Most sender accounts one group send may name.
pub const MAX_SENDERS: usize = 50;

/// Seed 004 content as a device command: TEXT, IMAGE by URL (`pic_url` / `url`) and LINK; other
/// kinds (mini programs, files, videos, library materials, images by WeCom media id) are
/// WeCom-only.
pub fn device_message(content: &Value) -> Option<(&'static str, Value)> {
    let data = &content["data"];
    let s = |k: &str| data[k].as_str().map(str::trim).filter(|s| !s.is_empty());
    match content["type"].as_str()? {
        "TEXT" => Some((command::SEND_TEXT, json!({"text": s("text")?}))),
        "IMAGE" => Some((
            command::SEND_IMAGE,
            json!({"url": s("pic_url").or(s("url"))?}),
        )),
        "LINK" => Some((
            command::SEND_LINK,
            json!({"title": s("title")?, "url": s("url")?, "desc": s("desc").unwrap_or_default(),
                   "picUrl": s("picUrl").or(s("pic_url")).unwrap_or_default()}),
        )),
        _ => None,
    }
}

/// The sender accounts of a create request, checked: each exists (404
/// `SENDER_ACCOUNT_NOT_FOUND`), is ACTIVE — a WeCom member who left or a logged-out device
/// account is 422 `SENDER_ACCOUNT_EXPIRED`, a disabled / not activated member or a device
/// whose gateway is not connected 422 `SENDER_ACCOUNT_OFFLINE` — and a device account can send
/// this content (422 `CAPABILITY_NOT_SUPPORTED`), every error naming the field. Nothing is
/// written.
pub async fn check_senders(
    state: &AppState,
    tenant_id: i64,
    senders: &[(String, String)],
    content: &Value,
) -> ApiResult<Vec<SenderAccount>> {
    let mut out = Vec::new();
    for (id, field) in senders {
        let acc = resolve(&state.db, tenant_id, id, field).await?;
        acc.require(Capability::SendToCustomer, field)?;
        acc.require_active(field)?;
        if acc.provider == Provider::Device && device_message(content).is_none() {
            let kind = content["type"].as_str().unwrap_or("this");
            let message = format!(
                "a personal WeChat (device) account cannot send {kind} content (TEXT, LINK, or IMAGE with data.pic_url)"
            );
            return Err(ApiError::Refused {
                status: StatusCode::UNPROCESSABLE_ENTITY,
                name: "CAPABILITY_NOT_SUPPORTED",
                message: format!("{field}: {message}"),
                fields: vec![FieldError {
                    field: field.clone(),
                    message,
                }],
            });
        }
        out.push(acc);
    }
    Ok(out)
}

/// The stored sender list of a task.
pub fn senders_of(task: &TaskRow) -> Vec<String> {
    task.sender_account_ids
        .as_deref()
        .and_then(|s| serde_json::from_str(s).ok())
        .unwrap_or_default()
}

async fn device_senders(tx: &mut Tx, tenant_id: i64, senders: &[String]) -> DbResult<Vec<String>> {
    if senders.is_empty() {
        return Ok(Vec::new());
    }
    let mut q =
        query("SELECT wxid FROM device_account WHERE tenant_id = ? AND wxid IN ").bind(tenant_id);
    q.push_in_list(senders.iter().cloned());
    let found: Vec<(String,)> = tx.fetch_all(q).await?;
    // In the order the task named them: the first one holding a customer sends to it.
    Ok(senders
        .iter()
        .filter(|s| found.iter().any(|f| &f.0 == *s))
        .cloned()
        .collect())
}

/// Give each PENDING result of a multi-sender task its sender (see the module doc); results
/// nobody chosen can reach are FAILED with the reason. Runs in the start job's transaction,
/// after the results were inserted with the customer's owner as `sender_userid`.
pub async fn assign(tx: &mut Tx, task: &TaskRow, senders: &[String]) -> DbResult<()> {
    let devices = device_senders(tx, task.tenant_id, senders).await?;
    let wecom: Vec<String> = senders
        .iter()
        .filter(|s| !devices.contains(s))
        .cloned()
        .collect();
    let mut q = query(
        "UPDATE t_group_send_result SET sender_userid = NULL WHERE task_id = ? AND status = 'PENDING'",
    )
    .bind(task.id);
    if !wecom.is_empty() {
        q.push_sql(" AND (sender_userid IS NULL OR sender_userid NOT IN ");
        q.push_in_list(wecom.iter().cloned());
        q.push_sql(")");
    }
    tx.execute(q).await?;
    // A customer a traffic pool handed to one of the chosen device accounts (its latest done
    // assignment, automation/traffic.rs) is sent through that account.
    for wxid in &devices {
        tx.execute(
            query(
                "UPDATE t_group_send_result SET sender_userid = ? WHERE task_id = ? AND status = 'PENDING' \
                 AND sender_userid IS NULL AND customer_id IN (SELECT f.customer_id FROM device_friend f \
                 WHERE f.tenant_id = ? AND f.account_wxid = ? AND f.deleted = 0 AND f.customer_id IS NOT NULL) \
                 AND customer_id IN (SELECT a.customer_id FROM traffic_assignment a JOIN traffic_pool_member m ON m.id = a.member_id \
                 WHERE a.tenant_id = ? AND a.status = 'done' AND m.account_type = 'WECHAT' AND m.account_id = ? \
                 AND NOT EXISTS (SELECT 1 FROM traffic_assignment b WHERE b.tenant_id = a.tenant_id \
                 AND b.customer_id = a.customer_id AND b.status = 'done' AND b.id > a.id))",
            )
            .bind(wxid)
            .bind(task.id)
            .bind(task.tenant_id)
            .bind(wxid)
            .bind(task.tenant_id)
            .bind(wxid),
        )
        .await?;
    }
    for wxid in &devices {
        tx.execute(
            query(
                "UPDATE t_group_send_result SET sender_userid = ? WHERE task_id = ? AND status = 'PENDING' \
                 AND sender_userid IS NULL AND customer_id IN (SELECT f.customer_id FROM device_friend f \
                 WHERE f.tenant_id = ? AND f.account_wxid = ? AND f.deleted = 0 AND f.customer_id IS NOT NULL)",
            )
            .bind(wxid)
            .bind(task.id)
            .bind(task.tenant_id)
            .bind(wxid),
        )
        .await?;
    }
    tx.execute(
        query(
            "UPDATE t_group_send_result SET status = 'FAILED', \
             error_message = 'not a customer or friend of any chosen sender account' \
             WHERE task_id = ? AND status = 'PENDING' AND sender_userid IS NULL",
        )
        .bind(task.id),
    )
    .await?;
    Ok(())
}

/// Record one gateway command per result assigned to a device account and mark those results
/// SUBMITTED (so the WeCom batches leave them out). Runs in the start job's transaction.
pub async fn queue(state: &AppState, tx: &mut Tx, task: &TaskRow, now: i64) -> anyhow::Result<()> {
    let senders = senders_of(task);
    let devices = device_senders(tx, task.tenant_id, &senders).await?;
    if devices.is_empty() {
        return Ok(());
    }
    let content: Value =
        serde_json::from_str(task.message_content.as_deref().unwrap_or("null")).unwrap_or_default();
    let Some((cmd, data)) = device_message(&content) else {
        // Checked at creation; a task stored before that check cannot be sent by a device.
        let mut q = query(
            "UPDATE t_group_send_result SET status = 'FAILED', error_message = ?, update_time = ? \
             WHERE task_id = ? AND status = 'PENDING' AND sender_userid IN ",
        )
        .bind("a device account cannot send this content")
        .bind(now)
        .bind(task.id);
        q.push_in_list(devices.iter().cloned());
        tx.execute(q).await?;
        return Ok(());
    };
    for wxid in &devices {
        let rows: Vec<(i64, String)> = tx
            .fetch_all(
                query(
                    "SELECT r.id, f.friend_wxid FROM t_group_send_result r JOIN device_friend f \
                     ON f.tenant_id = r.tenant_id AND f.account_wxid = r.sender_userid AND f.customer_id = r.customer_id AND f.deleted = 0 \
                     WHERE r.task_id = ? AND r.sender_userid = ? AND r.status = 'PENDING' ORDER BY r.id, f.friend_wxid",
                )
                .bind(task.id)
                .bind(wxid),
            )
            .await?;
        let mut last = 0;
        for (result_id, friend) in rows {
            if result_id == last {
                continue; // one customer linked to two friends of one account: sent once
            }
            last = result_id;
            let mut d = data.clone();
            d["to"] = json!(friend);
            let mut c = NewCommand::new(wxid, cmd, d, SOURCE, result_id);
            c.spaced = true;
            let command_id = record(state, tx, task.tenant_id, c).await?;
            tx.execute(
                query(
                    "UPDATE t_group_send_result SET status = 'SUBMITTED', command_id = ?, update_time = ? WHERE id = ?",
                )
                .bind(command_id)
                .bind(now)
                .bind(result_id),
            )
            .await?;
        }
    }
    Ok(())
}

/// A group-send command was acknowledged (or given up) for the first time: its result becomes
/// SUCCESS or FAILED with the device's reason, and the task's status is recomputed by a job
/// that runs after this transaction commits (so the last of two simultaneous acknowledgements
/// always sees both).
pub async fn on_command_final(
    state: &AppState,
    tx: &mut Tx,
    c: &CommandRow,
    ok: bool,
    error: Option<&str>,
) -> anyhow::Result<()> {
    let (to, reason) = if ok {
        (result::SUCCESS, None)
    } else {
        (
            result::FAILED,
            Some(format!(
                "device account {}: {}",
                c.account_wxid,
                error.unwrap_or("the device could not send it")
            )),
        )
    };
    tx.execute(
        query(
            "UPDATE t_group_send_result SET status = ?, error_message = ?, update_time = ? \
             WHERE id = ? AND command_id = ? AND status = 'SUBMITTED'",
        )
        .bind(to)
        .bind(reason)
        .bind(now_ms())
        .bind(c.source_id)
        .bind(c.command_id.as_str()),
    )
    .await?;
    let task: Option<(i64,)> = tx
        .fetch_optional(
            query("SELECT task_id FROM t_group_send_result WHERE id = ?").bind(c.source_id),
        )
        .await?;
    if let Some((task_id,)) = task {
        let job = NewJob::new(FINISH, &json!({"taskId": task_id}))?.tenant(c.tenant_id);
        state.jobs.enqueue(tx, job).await?;
    }
    Ok(())
}

/// Whether the group send a command belongs to was cancelled.
pub async fn cancelled(db: &Db, result_id: i64) -> DbResult<bool> {
    let st: Option<(String,)> = db
        .fetch_optional(
            query(
                "SELECT t.status FROM t_group_send_result r JOIN t_group_send_task t ON t.id = r.task_id WHERE r.id = ?",
            )
            .bind(result_id),
        )
        .await?;
    Ok(st.is_some_and(|s| s.0 == status::CANCELLED))
}

/// `devices.group_send.finish`.
pub async fn run_finish(
    state: AppState,
    ctx: JobContext,
    p: Value,
) -> Result<JobOutcome, JobError> {
    let Some(task_id) = p["taskId"].as_i64() else {
        return Ok(JobOutcome::Done);
    };
    store::finish_if_done(&state.db, task_id, ctx.now_ms())
        .await
        .map_err(JobError::retryable)?;
    Ok(JobOutcome::Done)
}

//! Following a submitted batch to the end: get_groupmsg_send_result until every recipient is
//! final (1 sent → SUCCESS; 2 not a friend, 3 quota → FAILED with the reason), reminding staff
//! who have not confirmed (remind_groupmsg_send, per the tenant's settings), giving up on
//! unconfirmed recipients after the deadline; and cancelling a task (`group_send.cancel`).

use std::collections::HashMap;

use scrm_jobs::{JobContext, JobError, JobOutcome, NewJob};
use serde_json::Value;

use super::engine::{BatchPayload, TaskPayload, group};
use super::store::{self, BatchRow};
use super::{Settings, batch, result};
use crate::operation::wecom::{TenantWeCom, client_for};
use crate::state::AppState;

/// Job kinds.
pub const POLL: &str = "group_send.poll";
pub const CANCEL: &str = "group_send.cancel";

/// Why a recipient failed, by get_groupmsg_send_result status.
pub fn reason(status: i64) -> &'static str {
    match status {
        2 => "not a friend of the sender (客户不是好友)",
        3 => "monthly receive quota reached (客户已收到其他群发消息)",
        _ => "not sent",
    }
}

/// The poll job of a batch, due at `at`.
pub fn poll_job(
    tenant_id: i64,
    task_id: i64,
    batch_id: i64,
    at: i64,
) -> Result<NewJob, scrm_jobs::JobsError> {
    Ok(NewJob::new(POLL, &BatchPayload { batch_id })?
        .tenant(tenant_id)
        .group(group(task_id))
        .unique_key(format!("gs:poll:{batch_id}"))
        .run_at(at))
}

/// The cancel job of a task.
pub fn cancel_job(tenant_id: i64, task_id: i64) -> Result<NewJob, scrm_jobs::JobsError> {
    // Not in the task's group: cancelling the group must not cancel this.
    Ok(NewJob::new(CANCEL, &TaskPayload { task_id })?
        .tenant(tenant_id)
        .unique_key(format!("gs:cancel:{task_id}")))
}

/// Apply one look at the results: returns how many recipients are still unsent.
async fn apply_results(
    state: &AppState,
    wecom: &TenantWeCom,
    b: &BatchRow,
    msgid: &str,
    now: i64,
) -> anyhow::Result<usize> {
    let list = wecom
        .app
        .get_groupmsg_send_result_all(msgid, &b.sender_userid)
        .await?;
    let mut by_status: HashMap<i64, Vec<String>> = HashMap::new();
    for r in list {
        by_status
            .entry(r.status)
            .or_default()
            .push(r.external_userid);
    }
    let unsent = by_status.get(&0).map_or(0, Vec::len);
    let mut tx = state.db.begin().await?;
    for (st, ids) in &by_status {
        match st {
            0 => {}
            1 => {
                store::set_results(
                    &mut tx,
                    b.id,
                    &[result::SUBMITTED],
                    result::SUCCESS,
                    None,
                    Some(ids),
                    now,
                )
                .await?;
            }
            other => {
                store::set_results(
                    &mut tx,
                    b.id,
                    &[result::SUBMITTED],
                    result::FAILED,
                    Some(reason(*other)),
                    Some(ids),
                    now,
                )
                .await?;
            }
        }
    }
    if unsent == 0 {
        // WeCom lists every recipient it accepted; anyone else was in a fail_list we did not
        // see (a reconciled batch) and will never receive it.
        store::set_results(
            &mut tx,
            b.id,
            &[result::SUBMITTED],
            result::FAILED,
            Some("not a customer of the sender (fail_list)"),
            None,
            now,
        )
        .await?;
        tx.execute(
            scrm_db::query("UPDATE group_send_batch SET state = 3, updated_at = ? WHERE id = ?")
                .bind(now)
                .bind(b.id),
        )
        .await?;
    }
    tx.commit().await?;
    Ok(unsent)
}

/// `group_send.poll`.
pub async fn run_poll(state: AppState, ctx: JobContext, p: Value) -> Result<JobOutcome, JobError> {
    let p: BatchPayload = serde_json::from_value(p)?;
    let Some(b) = store::get_batch(&state.db, p.batch_id).await? else {
        return Ok(JobOutcome::Done);
    };
    let Some(msgid) = b.msgid.clone().filter(|_| b.state == batch::SUBMITTED) else {
        return Ok(JobOutcome::Done);
    };
    let wecom = client_for(&state, b.tenant_id)
        .await
        .map_err(JobError::retryable)?;
    let settings = Settings::load(&state.db, b.tenant_id).await?;
    let now = ctx.now_ms();
    let unsent = match apply_results(&state, &wecom, &b, &msgid, now).await {
        Ok(n) => n,
        // 41063: WeCom is still dispatching the send; look again shortly.
        Err(e)
            if e.downcast_ref::<scrm_wecom::WeComError>()
                .and_then(|w| w.errcode())
                == Some(41063) =>
        {
            return Ok(JobOutcome::RetryAt(now + settings.first_poll_ms.max(1000)));
        }
        Err(e) => return Err(JobError::retryable(format!("{e:#}"))),
    };
    if unsent == 0 {
        store::finish_if_done(&state.db, b.task_id, now).await?;
        return Ok(JobOutcome::Done);
    }
    let submitted = b.submitted_at.unwrap_or(now);
    if now - submitted >= settings.confirm_deadline_ms {
        let mut tx = state.db.begin().await?;
        store::set_results(
            &mut tx,
            b.id,
            &[result::SUBMITTED],
            result::FAILED,
            Some("staff did not confirm the send in time"),
            None,
            now,
        )
        .await?;
        tx.execute(
            scrm_db::query("UPDATE group_send_batch SET state = 3, updated_at = ? WHERE id = ?")
                .bind(now)
                .bind(b.id),
        )
        .await?;
        tx.commit().await?;
        store::finish_if_done(&state.db, b.task_id, now).await?;
        return Ok(JobOutcome::Done);
    }
    maybe_remind(&state, &wecom, &b, &msgid, &settings, now).await;
    store::refresh_counts(&state.db, b.task_id, now).await?;
    Ok(JobOutcome::RetryAt(
        now + settings.poll_interval_ms.max(100),
    ))
}

/// Remind the sender when the send waits for confirmation longer than the setting allows.
async fn maybe_remind(
    state: &AppState,
    wecom: &TenantWeCom,
    b: &BatchRow,
    msgid: &str,
    s: &Settings,
    now: i64,
) {
    if s.remind_after_ms <= 0 || b.reminders >= s.max_reminders {
        return;
    }
    let since = b.last_reminded_at.or(b.submitted_at).unwrap_or(now);
    if now - since < s.remind_after_ms {
        return;
    }
    // Only when the member really has not confirmed (task status 0).
    let confirmed = match wecom.app.get_groupmsg_task_all(msgid).await {
        Ok(tasks) => tasks
            .iter()
            .any(|t| t.userid == b.sender_userid && t.status != 0),
        Err(_) => return,
    };
    if confirmed {
        return;
    }
    match wecom.app.remind_groupmsg_send(msgid).await {
        Ok(()) | Err(_) => {
            // 41094 (too many reminders) counts as used up, like a sent reminder.
            let _ = state
                .db
                .execute(
                    scrm_db::query(
                        "UPDATE group_send_batch SET reminders = reminders + 1, last_reminded_at = ? WHERE id = ?",
                    )
                    .bind(now)
                    .bind(b.id),
                )
                .await;
        }
    }
}

/// `group_send.cancel`: stop what was not submitted, cancel what was, record the outcome.
pub async fn run_cancel(
    state: AppState,
    ctx: JobContext,
    p: Value,
) -> Result<JobOutcome, JobError> {
    let p: TaskPayload = serde_json::from_value(p)?;
    let now = ctx.now_ms();
    let batches: Vec<(i64,)> = state
        .db
        .fetch_all(
            scrm_db::query(
                "SELECT id FROM group_send_batch WHERE task_id = ? AND state IN (0, 1, 2)",
            )
            .bind(p.task_id),
        )
        .await?;
    for (id,) in batches {
        let Some(b) = store::get_batch(&state.db, id).await? else {
            continue;
        };
        let tenant = b.tenant_id;
        let mut msgid = b.msgid.clone();
        if b.state == batch::CALLING {
            // A batch that died around its call may exist in WeCom: find it to cancel it.
            let wecom = client_for(&state, tenant)
                .await
                .map_err(JobError::retryable)?;
            if let Some(task) = store::task_by_id(&state.db, b.task_id).await? {
                let msg = super::engine::message_of(&state, &task, &wecom)
                    .await
                    .map_err(JobError::retryable)?;
                let recipients = store::batch_recipients(&state.db, b.id).await?;
                msgid = super::engine::reconcile(
                    &wecom,
                    &b.sender_userid,
                    b.attempt_started_at,
                    &msg,
                    super::engine::Audience::Customers(&recipients),
                    &state.db,
                    tenant,
                )
                .await
                .map_err(JobError::retryable)?;
            }
        }
        if let Some(msgid) = &msgid {
            let wecom = client_for(&state, tenant)
                .await
                .map_err(JobError::retryable)?;
            if let Err(e) = wecom.app.cancel_groupmsg_send(msgid).await
                && e.errcode() != Some(41093)
            {
                return Err(JobError::retryable(e));
            }
            // Whoever already received it stays SUCCESS.
            let fake = BatchRow {
                state: batch::SUBMITTED,
                ..b.clone()
            };
            let mut tx = state.db.begin().await?;
            store::set_results(
                &mut tx,
                b.id,
                &[result::PENDING],
                result::SUBMITTED,
                None,
                None,
                now,
            )
            .await?;
            tx.commit().await?;
            let _ = apply_results(&state, &wecom, &fake, msgid, now).await;
        }
        let mut tx = state.db.begin().await?;
        store::set_results(
            &mut tx,
            b.id,
            &[result::PENDING, result::SUBMITTED],
            result::FAILED,
            Some("cancelled"),
            None,
            now,
        )
        .await?;
        tx.execute(
            scrm_db::query("UPDATE group_send_batch SET state = 4, msgid = COALESCE(msgid, ?), updated_at = ? WHERE id = ?")
                .bind(msgid)
                .bind(now)
                .bind(b.id),
        )
        .await?;
        tx.commit().await?;
    }
    // Results never batched (cancelled before the start, or tag/assign tasks).
    state
        .db
        .execute(
            scrm_db::query(
                "UPDATE t_group_send_result SET status = 'FAILED', error_message = 'cancelled', update_time = ? \
                 WHERE task_id = ? AND status IN ('PENDING', 'SUBMITTED')",
            )
            .bind(now)
            .bind(p.task_id),
        )
        .await?;
    store::refresh_counts(&state.db, p.task_id, now).await?;
    Ok(JobOutcome::Done)
}

//! Starting a task and sending its batches exactly once.
//!
//! `group_send.start` resolves targets and plans batches in one transaction, enqueueing a
//! `group_send.batch` job per batch in that same transaction. `group_send.batch` records its
//! intent (state CALLING) and commits before add_msg_template, and records the msgid and
//! fail_list after; a batch that is found CALLING is reconciled first ([`reconcile`]).

use scrm_jobs::{JobContext, JobError, JobOutcome, KeyLimit, NewJob};
use scrm_wecom::WeComError;
use scrm_wecom::client::{GroupMsgListRequest, MsgTemplate};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::store::{self, BatchRow, TaskRow};
use super::{Settings, batch, result, status};
use crate::operation::content::{MessageContent, WeComMessage, to_wecom};
use crate::operation::wecom::{TenantWeCom, client_for};
use crate::state::AppState;

/// Job kinds.
pub const START: &str = "group_send.start";
pub const BATCH: &str = "group_send.batch";

/// The payload of every group-send job.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskPayload {
    pub task_id: i64,
}

/// The payload of batch and poll jobs.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BatchPayload {
    pub batch_id: i64,
}

/// The job group of a task: cancel stops all its jobs.
pub fn group(task_id: i64) -> String {
    format!("group_send:{task_id}")
}

/// The start job of a task, due at `at`.
pub fn start_job(tenant_id: i64, task_id: i64, at: i64) -> Result<NewJob, scrm_jobs::JobsError> {
    Ok(NewJob::new(START, &TaskPayload { task_id })?
        .tenant(tenant_id)
        .group(group(task_id))
        .unique_key(format!("gs:start:{task_id}"))
        .run_at(at))
}

/// A test hook standing in for a worker killed right after add_msg_template answered and
/// before the answer was recorded: when armed, the handler (a mass-send batch, an SOP or
/// workflow send step, a group welcome) hangs there until aborted.
pub mod chaos {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    static HANG_AFTER_CALL: AtomicBool = AtomicBool::new(false);
    static HUNG: AtomicUsize = AtomicUsize::new(0);

    /// Make the next send hang after its WeCom call (tests only; one process per test).
    pub fn hang_after_next_call() {
        HANG_AFTER_CALL.store(true, Ordering::SeqCst);
    }

    /// How many handlers are hanging.
    pub fn hung() -> usize {
        HUNG.load(Ordering::SeqCst)
    }

    /// Hang here when armed (called right after a successful add_msg_template).
    pub(crate) async fn maybe_hang() {
        if HANG_AFTER_CALL.swap(false, Ordering::SeqCst) {
            HUNG.fetch_add(1, Ordering::SeqCst);
            std::future::pending::<()>().await;
        }
    }
}

fn retry(e: impl std::fmt::Display) -> JobError {
    JobError::retryable(e)
}

/// `group_send.start`: resolve targets, plan batches, enqueue them.
pub async fn run_start(state: AppState, ctx: JobContext, p: Value) -> Result<JobOutcome, JobError> {
    let p: TaskPayload = serde_json::from_value(p)?;
    let Some(task) = store::task_by_id(&state.db, p.task_id).await? else {
        return Ok(JobOutcome::Done);
    };
    if task.status != status::PENDING {
        return Ok(JobOutcome::Done); // already started, or cancelled
    }
    let now = ctx.now_ms();
    let settings = Settings::load(&state.db, task.tenant_id).await?;
    let mut tx = state.db.begin().await?;
    // Re-check under the transaction: the status flip is the once-only guard.
    let claimed = tx
        .execute(
            scrm_db::query(
                "UPDATE t_group_send_task SET status = 'PROCESSING', started_at = ?, update_time = ? \
                 WHERE id = ? AND status = 'PENDING'",
            )
            .bind(now)
            .bind(now)
            .bind(task.id),
        )
        .await?
        .rows_affected;
    if claimed == 0 {
        return Ok(JobOutcome::Done);
    }
    store::resolve_targets(&mut tx, &task, now).await?;
    if task.task_type == 1 {
        // Results of device accounts go out as gateway commands (and leave PENDING first).
        crate::devices::group_send::queue(&state, &mut tx, &task, now)
            .await
            .map_err(retry)?;
        if let Some(quota) = settings.quota_for(now) {
            store::apply_monthly_quota(&mut tx, &task, quota, super::month_of(now).0, now).await?;
        }
        let batches = store::plan_batches(&mut tx, &task, settings.batch_size, now).await?;
        let jobs = batches
            .iter()
            .map(|(id, sender)| batch_job(&task, *id, sender, &settings))
            .collect::<Result<Vec<_>, _>>()?;
        state.jobs.enqueue_many(&mut tx, jobs).await?;
    } else {
        state
            .jobs
            .enqueue(&mut tx, super::actions::job(&task)?)
            .await?;
    }
    tx.commit().await?;
    store::finish_if_done(&state.db, task.id, now).await?;
    Ok(JobOutcome::Done)
}

fn batch_job(
    task: &TaskRow,
    batch_id: i64,
    sender: &str,
    s: &Settings,
) -> Result<NewJob, scrm_jobs::JobsError> {
    // One batch of a sender at a time, spaced: WeCom pushes each batch to the member's client
    // to confirm, and a flood of simultaneous sends from one member looks like spam.
    let limit = KeyLimit::concurrency(1).with_spacing(
        std::time::Duration::from_millis(s.batch_gap_ms.max(0) as u64),
        std::time::Duration::from_millis(s.batch_gap_ms.max(0) as u64),
    );
    Ok(NewJob::new(BATCH, &BatchPayload { batch_id })?
        .tenant(task.tenant_id)
        .group(group(task.id))
        .unique_key(format!("gs:batch:{batch_id}"))
        .limited_by(format!("wecom:sender:{}:{sender}", task.tenant_id), limit))
}

/// The message of a task, as WeCom parts.
pub async fn message_of(
    state: &AppState,
    task: &TaskRow,
    wecom: &TenantWeCom,
) -> anyhow::Result<WeComMessage> {
    let v: Value = serde_json::from_str(task.message_content.as_deref().unwrap_or("null"))?;
    to_wecom(
        state,
        task.tenant_id,
        wecom,
        &MessageContent::from_stored(v),
    )
    .await
}

/// `group_send.batch`: send one batch exactly once.
pub async fn run_batch(state: AppState, ctx: JobContext, p: Value) -> Result<JobOutcome, JobError> {
    let p: BatchPayload = serde_json::from_value(p)?;
    let Some(b) = store::get_batch(&state.db, p.batch_id).await? else {
        return Ok(JobOutcome::Done);
    };
    if b.state != batch::PLANNED && b.state != batch::CALLING {
        return Ok(JobOutcome::Done);
    }
    let Some(task) = store::task_by_id(&state.db, b.task_id).await? else {
        return Ok(JobOutcome::Done);
    };
    let wecom = client_for(&state, b.tenant_id).await.map_err(retry)?;
    let msg = message_of(&state, &task, &wecom).await.map_err(retry)?;
    let recipients = store::batch_recipients(&state.db, b.id).await?;
    if b.state == batch::CALLING {
        // The last attempt died around its call: find out whether WeCom has the send.
        if let Some(msgid) = reconcile(
            &wecom,
            &b.sender_userid,
            b.attempt_started_at,
            &msg,
            Audience::Customers(&recipients),
            &state.db,
            b.tenant_id,
        )
        .await
        .map_err(retry)?
        {
            tracing::info!(batch = b.id, %msgid, "reconciled an in-flight batch with WeCom");
            record_submitted(&state, &task, &b, &msgid, &[], ctx.now_ms()).await?;
            return Ok(JobOutcome::Done);
        }
    }
    if task.status == status::CANCELLED || ctx.is_cancelled() {
        return Ok(JobOutcome::Done);
    }
    // Intent first, committed: from here until the msgid is recorded the batch is CALLING.
    let now = ctx.now_ms();
    state
        .db
        .execute(
            scrm_db::query(
                "UPDATE group_send_batch SET state = 1, calls = calls + 1, attempt_started_at = ?, updated_at = ? WHERE id = ?",
            )
            .bind(now)
            .bind(now)
            .bind(b.id),
        )
        .await?;
    let request = MsgTemplate {
        chat_type: "single".into(),
        external_userid: recipients,
        sender: b.sender_userid.clone(),
        text: msg.text.clone(),
        attachments: msg.attachments.clone(),
        ..Default::default()
    };
    match wecom.app.add_msg_template(&request).await {
        Ok(resp) => {
            chaos::maybe_hang().await;
            record_submitted(
                &state,
                &task,
                &b,
                &resp.msgid,
                &resp.fail_list,
                ctx.now_ms(),
            )
            .await?;
            Ok(JobOutcome::Done)
        }
        Err(e) => handle_send_error(&state, &task, &b, e, ctx.now_ms()).await,
    }
}

/// WeCom answered with an error: nothing was created. Transport failures are ambiguous and
/// leave the batch CALLING, so the retry reconciles before sending.
async fn handle_send_error(
    state: &AppState,
    task: &TaskRow,
    b: &BatchRow,
    e: WeComError,
    now: i64,
) -> Result<JobOutcome, JobError> {
    let Some(code) = e.errcode() else {
        return Err(retry(e));
    };
    // A token refused after the client's one refresh is retried like a busy WeCom, not
    // recorded as WeCom refusing the send (see sop::runner::wecom_err).
    if e.is_transient() || e.is_token_invalid() {
        state
            .db
            .execute(
                scrm_db::query("UPDATE group_send_batch SET state = 0 WHERE id = ?").bind(b.id),
            )
            .await?;
        return Err(retry(e));
    }
    let reason = match code {
        41048 => "no sendable customer (not customers of the sender)".to_string(),
        _ => format!("WeCom refused the send: {e}"),
    };
    let mut tx = state.db.begin().await?;
    store::set_results(
        &mut tx,
        b.id,
        &[result::PENDING, result::SUBMITTED],
        result::FAILED,
        Some(&reason),
        None,
        now,
    )
    .await?;
    tx.execute(
        scrm_db::query(
            "UPDATE group_send_batch SET state = 5, error = ?, updated_at = ? WHERE id = ?",
        )
        .bind(&reason)
        .bind(now)
        .bind(b.id),
    )
    .await?;
    tx.commit().await?;
    store::finish_if_done(&state.db, task.id, now).await?;
    Ok(JobOutcome::Done)
}

/// Record a submitted batch: msgid, fail_list FAILED at once, the rest SUBMITTED, and the first
/// poll — one transaction. If the task was cancelled meanwhile, cancel the send in WeCom too.
async fn record_submitted(
    state: &AppState,
    task: &TaskRow,
    b: &BatchRow,
    msgid: &str,
    fail_list: &[String],
    now: i64,
) -> Result<(), JobError> {
    let settings = Settings::load(&state.db, task.tenant_id).await?;
    let mut tx = state.db.begin().await?;
    tx.execute(
        scrm_db::query(
            "UPDATE group_send_batch SET state = 2, msgid = ?, submitted_at = ?, updated_at = ? WHERE id = ?",
        )
        .bind(msgid)
        .bind(now)
        .bind(now)
        .bind(b.id),
    )
    .await?;
    if !fail_list.is_empty() {
        store::set_results(
            &mut tx,
            b.id,
            &[result::PENDING],
            result::FAILED,
            Some("not a customer of the sender (fail_list)"),
            Some(fail_list),
            now,
        )
        .await?;
    }
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
    let poll = super::poll::poll_job(b.tenant_id, task.id, b.id, now + settings.first_poll_ms)?;
    state.jobs.enqueue(&mut tx, poll).await?;
    tx.commit().await?;
    let current = store::task_by_id(&state.db, task.id).await?;
    if current.is_some_and(|t| t.status == status::CANCELLED)
        && let Ok(wecom) = client_for(state, b.tenant_id).await
    {
        wecom.app.cancel_groupmsg_send(msgid).await.map_err(retry)?;
    }
    store::refresh_counts(&state.db, task.id, now).await?;
    Ok(())
}

/// Who a send went to: customers (`chat_type` single) or customer groups (`chat_type` group).
#[derive(Debug, Clone, Copy)]
pub enum Audience<'a> {
    /// External user ids.
    Customers(&'a [String]),
    /// Group chat ids.
    Groups(&'a [String]),
}

impl<'a> Audience<'a> {
    /// One customer or one group.
    pub fn one(id: &'a String, group: bool) -> Self {
        if group {
            Audience::Groups(std::slice::from_ref(id))
        } else {
            Audience::Customers(std::slice::from_ref(id))
        }
    }
}

/// Look for a send WeCom already has for this batch: created by `sender` around the recorded
/// attempt, with this content, not already recorded for another batch, whose recipients (the
/// customers of a single send, the chats of a group send) are this batch's. Returns its msgid.
pub async fn reconcile(
    wecom: &TenantWeCom,
    sender: &str,
    attempt_started_at: Option<i64>,
    msg: &WeComMessage,
    to: Audience<'_>,
    db: &scrm_db::Db,
    tenant_id: i64,
) -> anyhow::Result<Option<String>> {
    let started = attempt_started_at.unwrap_or_else(crate::state::now_ms) / 1000;
    let (chat_type, recipients) = match to {
        Audience::Customers(ids) => ("single", ids),
        Audience::Groups(ids) => ("group", ids),
    };
    let request = GroupMsgListRequest {
        chat_type: chat_type.into(),
        start_time: started - 300,
        end_time: crate::state::now_ms() / 1000 + 300,
        creator: sender.to_string(),
        filter_type: Some(0),
        limit: 100,
        cursor: String::new(),
    };
    let fingerprint = msg.fingerprint_of();
    let wanted: std::collections::HashSet<&str> = recipients.iter().map(String::as_str).collect();
    for m in wecom.app.get_groupmsg_list_v2_all(&request).await? {
        if WeComMessage::fingerprint(m.text.as_ref(), &m.attachments) != fingerprint {
            continue;
        }
        let known = db
            .fetch_i64(
                scrm_db::query(
                    "SELECT COUNT(*) FROM group_send_batch WHERE tenant_id = ? AND msgid = ?",
                )
                .bind(tenant_id)
                .bind(&m.msgid),
            )
            .await?;
        if known > 0 {
            continue;
        }
        let page = wecom
            .app
            .get_groupmsg_send_result(&m.msgid, sender, 1000, "")
            .await?;
        if !page.send_list.is_empty()
            && page.send_list.iter().all(|r| {
                wanted.contains(match to {
                    Audience::Customers(_) => r.external_userid.as_str(),
                    Audience::Groups(_) => r.chat_id.as_str(),
                })
            })
        {
            return Ok(Some(m.msgid));
        }
    }
    Ok(None)
}

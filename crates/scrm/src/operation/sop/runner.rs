//! The `sop.step` job: run one step of one execution and log what happened (WeCom's answer).
//! Sends record their intent (step status 1) before add_msg_template and reconcile on retry, as
//! the mass-send batches do; tags and reminders are idempotent enough to repeat.

use scrm_db::query;
use scrm_jobs::engine::EngineBuilder;
use scrm_jobs::{JobContext, JobError, JobOutcome, KindOptions, Scope, Target};
use scrm_wecom::client::{AppMessage, AppMessageContent, MsgTemplate, Text};
use serde_json::{Value, json};

use super::store::{self, ExecStepRow, ExecutionRow, STEP, StepPayload};
use super::{status, step_status};
use crate::operation::content::{self, MessageContent, WeComMessage};
use crate::operation::mass::actions;
use crate::operation::mass::engine::{Audience, reconcile};
use crate::operation::mass::{over_quota, store as mass_store};
use crate::operation::wecom::{TenantWeCom, client_for};
use crate::state::AppState;

/// Register the step kind (and the event triggers).
pub fn register(builder: EngineBuilder, state: &AppState, opts: KindOptions) -> EngineBuilder {
    super::triggers::subscribe(state);
    let s = state.clone();
    builder.register(STEP, opts, move |ctx, p| run_step(s.clone(), ctx, p))
}

/// Who a step acts on: a customer (external id, owner) or a group chat (chat id, owner).
struct Subject {
    external_id: String,
    owner: String,
    customer_id: Option<i64>,
    group: bool,
}

async fn subject(state: &AppState, e: &ExecutionRow) -> anyhow::Result<Result<Subject, String>> {
    if e.target_type == 2 {
        let row: Option<(String, Option<String>)> = state
            .db
            .fetch_optional(
                query(
                    "SELECT chat_id, owner_userid FROM group_chat WHERE tenant_id = ? AND id = ?",
                )
                .bind(e.tenant_id)
                .bind(e.target_id),
            )
            .await?;
        return Ok(match row {
            Some((chat, Some(owner))) => Ok(Subject {
                external_id: chat,
                owner,
                customer_id: None,
                group: true,
            }),
            Some(_) => Err("group chat has no owner".into()),
            None => Err("group chat not found".into()),
        });
    }
    let row: Option<(String, i64, i64, Option<String>)> = state
        .db
        .fetch_optional(
            query(
                "SELECT c.external_userid, c.status, c.blacklisted, s.userid FROM customer c \
                 LEFT JOIN staff s ON s.tenant_id = c.tenant_id AND s.id = c.follow_user_id \
                 WHERE c.tenant_id = ? AND c.id = ?",
            )
            .bind(e.tenant_id)
            .bind(e.target_id),
        )
        .await?;
    Ok(match row {
        None => Err("customer not found".into()),
        Some((_, 0, _, _)) => Err("customer was deleted".into()),
        Some((_, _, 1, _)) => Err("customer is blacklisted".into()),
        Some((_, _, _, None)) => Err("customer has no owner staff".into()),
        Some((ext, _, _, Some(owner))) => Ok(Subject {
            external_id: ext,
            owner,
            customer_id: Some(e.target_id),
            group: false,
        }),
    })
}

async fn load_step(
    state: &AppState,
    e: &ExecutionRow,
    p: &StepPayload,
) -> anyhow::Result<Option<ExecStepRow>> {
    Ok(store::exec_steps(&state.db, e.tenant_id, &[p.execution_id])
        .await?
        .into_iter()
        .map(|(_, s)| s)
        .find(|s| s.step_order == p.step_order))
}

/// `sop.step`.
pub async fn run_step(state: AppState, ctx: JobContext, p: Value) -> Result<JobOutcome, JobError> {
    let p: StepPayload = serde_json::from_value(p)?;
    let Some(e) = store::execution(&state.db, p.execution_id).await? else {
        return Ok(JobOutcome::Done);
    };
    match e.status {
        status::RUNNING => {}
        // Claimed just as the pause landed: look again after the resume.
        status::PAUSED => return Ok(JobOutcome::RetryAt(ctx.now_ms() + 5_000)),
        _ => return Ok(JobOutcome::Done),
    }
    let step = load_step(&state, &e, &p)
        .await
        .map_err(JobError::retryable)?;
    let Some(step) =
        step.filter(|s| s.status == step_status::PENDING || s.status == step_status::CALLING)
    else {
        return Ok(JobOutcome::Done);
    };
    let outcome = match subject(&state, &e).await.map_err(JobError::retryable)? {
        Err(why) => (step_status::SKIPPED, json!({"skipped": why}), None),
        Ok(subj) => {
            let wecom = client_for(&state, e.tenant_id)
                .await
                .map_err(JobError::retryable)?;
            match act(&state, &wecom, &e, &step, &subj, &ctx).await {
                Ok((result, msgid)) => (step_status::DONE, result, msgid),
                Err(ActError::Retry(m)) if !ctx.is_last_attempt() => {
                    return Err(JobError::Retryable(m));
                }
                // A send whose attempts ran out on a transient error tries again without using
                // attempts, for a while after it was due: attempts are also used up by workers
                // killed mid-call (their leases expire), and recording FAILED here lost
                // messages the next try would have sent (the chaos run's 4 losses), or recorded
                // a send that had gone out (a retry reconciles it with WeCom first).
                Err(ActError::Retry(m))
                    if matches!(step.step_type, 1 | 3)
                        && ctx.now_ms() - step.due_at < SEND_GIVE_UP_MS =>
                {
                    let wait = state
                        .config
                        .wecom_retry
                        .last()
                        .map_or(60_000, |d| d.as_millis() as i64)
                        .min(SEND_LATE_RETRY_MAX_MS);
                    tracing::warn!(step = step.id, error = %m, "sop send out of attempts on a transient error; trying again");
                    return Ok(JobOutcome::RetryAt(ctx.now_ms() + wait));
                }
                Err(ActError::Retry(m)) | Err(ActError::Fail(m)) => {
                    (step_status::FAILED, json!({"error": m}), None)
                }
            }
        }
    };
    finish_step(&state, &e, &step, outcome, ctx.now_ms()).await?;
    Ok(JobOutcome::Done)
}

/// How long after its due time a send step keeps trying on transient errors once its attempts
/// are used up.
const SEND_GIVE_UP_MS: i64 = 6 * 3600 * 1000;
/// The longest wait between such tries.
const SEND_LATE_RETRY_MAX_MS: i64 = 300_000;

enum ActError {
    Retry(String),
    Fail(String),
}

fn wecom_err(e: scrm_wecom::WeComError) -> ActError {
    // An access token refused after the client's one refresh (42001 twice in a row: WeCom
    // expired the new token early, or another process refreshed meanwhile) is not the send's
    // fault: the next try fetches a fresh token. Failing here lost a message in the 20k chaos
    // run (a step recorded FAILED, never sent).
    if e.is_transient() || e.is_token_invalid() {
        ActError::Retry(e.to_string())
    } else {
        ActError::Fail(e.to_string())
    }
}

async fn message_for(
    state: &AppState,
    e: &ExecutionRow,
    wecom: &TenantWeCom,
    step: &ExecStepRow,
) -> anyhow::Result<WeComMessage> {
    let a: Value = serde_json::from_str(&step.action_content)?;
    let mc = if step.step_type == 3 {
        json!({"type": "MATERIAL", "data": {"materialId": a.get("materialId")}})
    } else if let Some(mc) = a.get("messageContent") {
        mc.clone()
    } else {
        json!({"type": "TEXT", "data": {"text": a.get("content").and_then(Value::as_str).unwrap_or_default()}})
    };
    content::to_wecom(state, e.tenant_id, wecom, &MessageContent::from_stored(mc)).await
}

/// Perform a step; returns the log result and the msgid of a send.
async fn act(
    state: &AppState,
    wecom: &TenantWeCom,
    e: &ExecutionRow,
    step: &ExecStepRow,
    subj: &Subject,
    ctx: &JobContext,
) -> Result<(Value, Option<String>), ActError> {
    let a: Value = serde_json::from_str(&step.action_content).unwrap_or_default();
    match step.step_type {
        1 | 3 => {
            let msg = message_for(state, e, wecom, step)
                .await
                .map_err(|e| ActError::Retry(format!("{e:#}")))?;
            if step.status == step_status::CALLING {
                let found = reconcile(
                    wecom,
                    &subj.owner,
                    step.attempt_started_at,
                    &msg,
                    Audience::one(&subj.external_id, subj.group),
                    &state.db,
                    e.tenant_id,
                )
                .await
                .map_err(|e| ActError::Retry(format!("{e:#}")))?;
                if let Some(msgid) = found {
                    return Ok((json!({"msgid": msgid, "reconciled": true}), Some(msgid)));
                }
            }
            let now = ctx.now_ms();
            // The monthly quota counts SOP messages to a customer as WeCom does: one over it is
            // not sent, and the step says why.
            if !subj.group
                && let Some(customer) = subj.customer_id
                && let Some(why) = over_quota(&state.db, e.tenant_id, customer, now)
                    .await
                    .map_err(|e| ActError::Retry(e.to_string()))?
            {
                return Err(ActError::Fail(why));
            }
            state
                .db
                .execute(query("UPDATE sop_execution_step SET status = 1, attempt_started_at = ?, updated_at = ? WHERE id = ?").bind(now).bind(now).bind(step.id))
                .await
                .map_err(|e| ActError::Retry(e.to_string()))?;
            let mut req = MsgTemplate {
                sender: subj.owner.clone(),
                text: msg.text.clone(),
                attachments: msg.attachments.clone(),
                ..Default::default()
            };
            if subj.group {
                req.chat_type = "group".into();
                req.chat_id_list = vec![subj.external_id.clone()];
            } else {
                req.chat_type = "single".into();
                req.external_userid = vec![subj.external_id.clone()];
            }
            match wecom.app.add_msg_template(&req).await {
                Ok(r) => {
                    crate::operation::mass::engine::chaos::maybe_hang().await;
                    Ok((
                        json!({"errcode": 0, "msgid": r.msgid, "failList": r.fail_list}),
                        Some(r.msgid),
                    ))
                }
                Err(err) if err.errcode().is_none() => Err(ActError::Retry(err.to_string())),
                Err(err) => {
                    let _ = state
                        .db
                        .execute(
                            query("UPDATE sop_execution_step SET status = 0 WHERE id = ?")
                                .bind(step.id),
                        )
                        .await;
                    Err(wecom_err(err))
                }
            }
        }
        2 => {
            let tags: Vec<i64> = a
                .get("tagIds")
                .and_then(Value::as_array)
                .map(|v| v.iter().filter_map(Value::as_i64).collect())
                .unwrap_or_default();
            let customer = subj
                .customer_id
                .ok_or_else(|| ActError::Fail("not a customer".into()))?;
            actions::tag_customer(
                state,
                wecom,
                e.tenant_id,
                customer,
                &subj.owner,
                &subj.external_id,
                &tags,
            )
            .await
            .map(|r| (json!({"errcode": 0, "answer": r, "tagIds": tags}), None))
            .map_err(|e| match e.downcast::<scrm_wecom::WeComError>() {
                Ok(w) => wecom_err(w),
                Err(e) => ActError::Retry(format!("{e:#}")),
            })
        }
        4 => {
            let to = actions::assignee(&state.db, e.tenant_id, &a)
                .await
                .map_err(|e| ActError::Retry(e.to_string()))?
                .ok_or_else(|| ActError::Fail("staff to assign to not found".into()))?;
            let customer = subj
                .customer_id
                .ok_or_else(|| ActError::Fail("not a customer".into()))?;
            actions::assign_customer(
                state,
                wecom,
                e.tenant_id,
                customer,
                &subj.owner,
                &subj.external_id,
                &to,
                &format!("SOP execution {}", e.id),
            )
            .await
            .map(|r| (r, None))
            .map_err(|e| match e.downcast::<scrm_wecom::WeComError>() {
                Ok(w) => wecom_err(w),
                Err(e) if e.is::<actions::TransferRefused>() => ActError::Fail(format!("{e:#}")),
                Err(e) => ActError::Retry(format!("{e:#}")),
            })
        }
        _ => {
            let text = a
                .get("content")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            // App messages go out as the self-built app (its own secret, not the
            // customer-contact one).
            let r = wecom
                .agent
                .message_send(&AppMessage {
                    touser: subj.owner.clone(),
                    toparty: String::new(),
                    totag: String::new(),
                    agentid: wecom.agent_id,
                    content: AppMessageContent::Text {
                        text: Text { content: text },
                    },
                    safe: None,
                    enable_id_trans: None,
                    enable_duplicate_check: Some(1),
                    duplicate_check_interval: Some(1800),
                })
                .await
                .map_err(wecom_err)?;
            Ok((
                json!({"errcode": 0, "msgid": r.msgid, "invaliduser": r.invaliduser}),
                None,
            ))
        }
    }
}

/// Log the step and move the execution on; the last step ends it (done, or failed if any step
/// failed).
async fn finish_step(
    state: &AppState,
    e: &ExecutionRow,
    step: &ExecStepRow,
    (st, result, msgid): (i64, Value, Option<String>),
    now: i64,
) -> Result<(), JobError> {
    let mut tx = state.db.begin().await?;
    // Lock the execution first: steps due at the same moment finish at the same time, and each
    // must see the others' outcome when it counts what is left — two transactions that each
    // saw the other's step still open would both leave the execution running for ever (found
    // by the chaos harness). The later one waits here, then counts after the first committed.
    tx.execute(
        query("UPDATE sop_execution SET updated_at = ? WHERE id = ?")
            .bind(now)
            .bind(e.id),
    )
    .await?;
    tx.execute(
        query("UPDATE sop_execution_step SET status = ?, result = ?, msgid = COALESCE(?, msgid), executed_at = ?, updated_at = ? WHERE id = ?")
            .bind(st)
            .bind(result.to_string())
            .bind(msgid)
            .bind(now)
            .bind(now)
            .bind(step.id),
    )
    .await?;
    // A message that reached a customer counts toward the monthly quota (one not sent because
    // the customer is not the owner's any more is in WeCom's fail_list).
    if st == step_status::DONE
        && matches!(step.step_type, 1 | 3)
        && e.target_type == 1
        && result["failList"].as_array().is_none_or(|l| l.is_empty())
    {
        mass_store::log_mass_message(&mut tx, e.tenant_id, e.target_id, "sop", step.id, now)
            .await?;
    }
    // What is left open and what failed, in one statement.
    let (left, failed): (i64, i64) = tx
        .fetch_one(
            query(
                "SELECT COUNT(CASE WHEN status IN (0, 1) THEN 1 END), \
                 COUNT(CASE WHEN status = 3 THEN 1 END) \
                 FROM sop_execution_step WHERE tenant_id = ? AND execution_id = ?",
            )
            .bind(e.tenant_id)
            .bind(e.id),
        )
        .await?;
    if left == 0 {
        let fin = if failed > 0 {
            status::FAILED
        } else {
            status::DONE
        };
        tx.execute(
            query("UPDATE sop_execution SET status = ?, current_step = ?, active_key = NULL, finished_at = ?, updated_at = ? WHERE id = ? AND status = 0")
                .bind(fin)
                .bind(step.step_order)
                .bind(now)
                .bind(now)
                .bind(e.id),
        )
        .await?;
    } else {
        tx.execute(
            query("UPDATE sop_execution SET current_step = ?, updated_at = ? WHERE id = ? AND current_step < ?")
                .bind(step.step_order)
                .bind(now)
                .bind(e.id)
                .bind(step.step_order),
        )
        .await?;
    }
    tx.commit().await?;
    Ok(())
}

/// Pause, resume or cancel executions of a tenant; returns how many changed.
pub async fn control(
    state: &AppState,
    tenant_id: i64,
    ids: &[i64],
    action: &str,
) -> anyhow::Result<u64> {
    let now = crate::state::now_ms();
    let mut changed = 0;
    for id in ids {
        let Some(e) = store::execution(&state.db, *id)
            .await?
            .filter(|e| e.tenant_id == tenant_id)
        else {
            continue;
        };
        let target = Target::Group(store::group(e.id));
        let scope = Scope::Tenant(tenant_id);
        let n = match (action, e.status) {
            ("pause", status::RUNNING) => {
                state.jobs.pause(scope, &target).await?;
                state.db.execute(query("UPDATE sop_execution SET status = 2, paused_at = ?, updated_at = ? WHERE id = ? AND status = 0").bind(now).bind(now).bind(e.id)).await?.rows_affected
            }
            ("resume", status::PAUSED) => {
                let paused_for = now - e.paused_at.unwrap_or(now);
                let n = state.db.execute(query("UPDATE sop_execution SET status = 0, paused_at = NULL, updated_at = ? WHERE id = ? AND status = 2").bind(now).bind(e.id)).await?.rows_affected;
                state.db.execute(query("UPDATE sop_execution_step SET due_at = due_at + ?, updated_at = ? WHERE tenant_id = ? AND execution_id = ? AND status = 0").bind(paused_for).bind(now).bind(e.tenant_id).bind(e.id)).await?;
                state.jobs.resume(scope, &target, true).await?;
                n
            }
            ("cancel", status::RUNNING | status::PAUSED) => {
                state.jobs.cancel(scope, &target).await?;
                let n = state.db.execute(query("UPDATE sop_execution SET status = 4, active_key = NULL, finished_at = ?, updated_at = ? WHERE id = ? AND status IN (0, 2)").bind(now).bind(now).bind(e.id)).await?.rows_affected;
                state.db.execute(query("UPDATE sop_execution_step SET status = 4, updated_at = ? WHERE tenant_id = ? AND execution_id = ? AND status = 0").bind(now).bind(e.tenant_id).bind(e.id)).await?;
                n
            }
            _ => 0,
        };
        changed += n;
    }
    Ok(changed)
}

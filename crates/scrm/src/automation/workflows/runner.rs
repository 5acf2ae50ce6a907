//! The `automation.workflow.step` job: run one step of one run, log it, and enqueue the next
//! step (due now, after a delay, or when a window opens) in the same transaction.
//!
//! Local effects (tags, owner, stage) are made in that transaction too, so a step is done
//! exactly when its effect is. External effects are recorded before they are made: the step log
//! moves to status 1 (calling) with the attempt's start, then WeCom (or the webhook) is called;
//! a retry of a send finds a message WeCom already has (get_groupmsg_list_v2) instead of sending
//! it again, reminders use WeCom's duplicate check, webhooks carry an idempotency key.

use rand::Rng;
use scrm_db::{Tx, query};
use scrm_jobs::{JobContext, JobError, JobOutcome, Scope, Target};
use scrm_wecom::client::{AppMessage, AppMessageContent, MsgTemplate, Text};
use serde_json::{Value, json};

use super::model::{self, Definition, Otherwise, Step, StepType};
use super::store::{self, RunRow, RunStepRow, StepPayload};
use super::{status, step_status};
use crate::automation::welcome::{self, Vars, WelcomeContent};
use crate::customers::push::Pushes;
use crate::operation::content::WeComMessage;
use crate::operation::mass::engine::{Audience, reconcile};
use crate::operation::wecom::{TenantWeCom, client_for};
use crate::state::{AppState, iso};

/// Who a run acts on.
#[derive(Debug, Clone, Default)]
struct Subject {
    group: bool,
    id: i64,
    /// external_userid, or the group's chat_id.
    external_id: String,
    name: String,
    /// The owner: (staff id, userid, name); a group has its owner's userid only.
    owner_id: Option<i64>,
    owner_userid: Option<String>,
    owner_name: String,
    /// A customer no member follows any more (a run started by its deletion).
    deleted: bool,
}

async fn subject(state: &AppState, r: &RunRow) -> anyhow::Result<Result<Subject, String>> {
    if r.subject_type == 2 {
        let row: Option<(String, Option<String>, Option<String>)> = state
            .db
            .fetch_optional(
                query("SELECT chat_id, name, owner_userid FROM group_chat WHERE tenant_id = ? AND id = ?")
                    .bind(r.tenant_id)
                    .bind(r.subject_id),
            )
            .await?;
        return Ok(match row {
            None => Err("group chat not found".into()),
            Some((chat, name, owner)) => Ok(Subject {
                group: true,
                id: r.subject_id,
                external_id: chat,
                name: name.unwrap_or_default(),
                owner_userid: owner,
                ..Default::default()
            }),
        });
    }
    #[allow(clippy::type_complexity)]
    let row: Option<(String, Option<String>, i64, i64, Option<i64>, Option<String>, Option<String>)> = state
        .db
        .fetch_optional(
            query(
                "SELECT c.external_userid, c.name, c.status, c.blacklisted, s.id, s.userid, s.name FROM customer c \
                 LEFT JOIN staff s ON s.tenant_id = c.tenant_id AND s.id = c.follow_user_id \
                 WHERE c.tenant_id = ? AND c.id = ?",
            )
            .bind(r.tenant_id)
            .bind(r.subject_id),
        )
        .await?;
    Ok(match row {
        None => Err("customer not found".into()),
        // A run a deletion started acts on the customer it was about (tags, stage, reminders,
        // webhooks); any other run stops at a deleted customer.
        Some((_, _, 0, _, _, _, _)) if r.trigger_type != "customer_deleted" => {
            Err("customer was deleted".into())
        }
        Some((ext, name, status, blacklisted, sid, suser, sname)) => {
            if blacklisted == 1 {
                return Ok(Err("customer is blacklisted".into()));
            }
            Ok(Subject {
                group: false,
                id: r.subject_id,
                external_id: ext,
                name: name.unwrap_or_default(),
                owner_id: sid,
                owner_userid: suser,
                owner_name: sname.unwrap_or_default(),
                deleted: status == 0,
            })
        }
    })
}

/// How long after its due time an external step (send, reminder, webhook) keeps trying on
/// transient errors once its attempts are used up.
const SEND_GIVE_UP_MS: i64 = 6 * 3600 * 1000;
/// The longest wait between such tries.
const SEND_LATE_RETRY_MAX_MS: i64 = 300_000;

/// How a step ended.
enum Flow {
    /// Go to step `index` at `at`.
    Next(usize, i64),
    /// The run ends here (done).
    End,
}

/// A step's failure.
enum ActError {
    /// Worth another attempt (network, WeCom busy, database).
    Retry(String),
    /// Not worth repeating (WeCom refused, no owner …): the step and run fail.
    Fail(String),
}

impl From<scrm_db::DbError> for ActError {
    fn from(e: scrm_db::DbError) -> Self {
        ActError::Retry(e.to_string())
    }
}

fn wecom_err(e: scrm_wecom::WeComError) -> ActError {
    if e.is_transient() || e.errcode().is_none() {
        ActError::Retry(e.to_string())
    } else {
        ActError::Fail(e.to_string())
    }
}

/// `automation.workflow.step`.
pub async fn run_step(state: AppState, ctx: JobContext, p: Value) -> Result<JobOutcome, JobError> {
    let p: StepPayload = serde_json::from_value(p)?;
    let Some(run) = store::run(&state.db, p.run_id).await? else {
        return Ok(JobOutcome::Done);
    };
    match run.status {
        status::PENDING | status::RUNNING => {}
        // Claimed just as a pause landed: look again later (resume wakes it too).
        status::PAUSED => return Ok(JobOutcome::RetryAt(ctx.now_ms() + 5_000)),
        _ => return Ok(JobOutcome::Done),
    }
    let Some(log) = store::run_step(&state.db, run.id, p.index).await? else {
        return Ok(JobOutcome::Done);
    };
    if log.status != step_status::WAITING && log.status != step_status::CALLING {
        return Ok(JobOutcome::Done);
    }
    let version = store::version_by_id(&state.db, run.version_id)
        .await?
        .ok_or_else(|| JobError::permanent("the run's version is gone"))?;
    let def = version.definition().map_err(JobError::permanent)?;
    let index = p.index as usize;
    let Some(step) = def.steps.get(index) else {
        return Err(JobError::permanent("no such step in the run's version"));
    };
    let now = ctx.now_ms();
    let needs_subject = !matches!(step.kind, StepType::Delay | StepType::Window);
    let subj = if needs_subject {
        match subject(&state, &run).await.map_err(JobError::retryable)? {
            Ok(s) => Some(s),
            Err(why) => {
                finish(&state, &run, &log, &def, Err(why), now).await?;
                return Ok(JobOutcome::Done);
            }
        }
    } else {
        None
    };
    // External effects first (recorded before they are made), outside the transaction.
    let external = match step.kind {
        StepType::SendMessage
        | StepType::RemindStaff
        | StepType::Webhook
        | StepType::AssignOwner
        | StepType::AssignPool => {
            let subj = subj.as_ref().expect("loaded above");
            let r = match step.kind {
                StepType::AssignPool => match pool(&state, &run, &log, step, subj).await {
                    Ok(v) => Ok(v),
                    // No member takes customers now: the step waits for one.
                    Err(Err(at)) => return Ok(JobOutcome::RetryAt(at)),
                    Err(Ok(e)) => Err(e),
                },
                StepType::SendMessage => send_message(&state, &run, &log, step, subj, now).await,
                StepType::RemindStaff => remind(&state, &run, &log, step, subj, now).await,
                StepType::AssignOwner => transfer(&state, &run, &log, step, subj, now).await,
                _ => webhook(&state, &run, &version, &log, step, subj, now).await,
            };
            match r {
                Ok(v) => Some(Ok(v)),
                Err(ActError::Retry(m)) if !ctx.is_last_attempt() => {
                    return Err(JobError::Retryable(m));
                }
                // Out of attempts on a transient error (WeCom down, a webhook answering 503, or
                // attempts used up by workers killed mid-call): keep trying without using
                // attempts for a while after the step was due — recording FAILED would lose
                // the message; a later try reconciles with WeCom first, so nothing goes twice.
                // The same rule as SOP send steps (operation/sop/runner.rs).
                Err(ActError::Retry(m)) if now - log.due_at < SEND_GIVE_UP_MS => {
                    let wait = state
                        .config
                        .wecom_retry
                        .last()
                        .map_or(60_000, |d| d.as_millis() as i64)
                        .min(SEND_LATE_RETRY_MAX_MS);
                    tracing::warn!(run = run.id, step = log.step_index, error = %m, "workflow step out of attempts on a transient error; trying again");
                    return Ok(JobOutcome::RetryAt(now + wait));
                }
                Err(ActError::Retry(m)) | Err(ActError::Fail(m)) => Some(Err(m)),
            }
        }
        _ => None,
    };
    let outcome = match external {
        Some(Ok(result)) => Ok((result, Flow::Next(index + 1, now))),
        Some(Err(m)) => Err(m),
        None => match local(&state, &run, index, step, &def, subj.as_ref(), now).await {
            Ok(o) => Ok(o),
            Err(ActError::Retry(m)) if !ctx.is_last_attempt() => {
                return Err(JobError::Retryable(m));
            }
            Err(ActError::Retry(m)) | Err(ActError::Fail(m)) => Err(m),
        },
    };
    finish(&state, &run, &log, &def, outcome, now).await?;
    Ok(JobOutcome::Done)
}

/// Steps without an external effect: their result and where the run goes. Effects on the
/// customer (tags, owner, stage) are made by [`finish`] in its transaction; here they are only
/// planned and checked.
async fn local(
    state: &AppState,
    run: &RunRow,
    index: usize,
    step: &Step,
    def: &Definition,
    subj: Option<&Subject>,
    now: i64,
) -> Result<(Value, Flow), ActError> {
    match step.kind {
        StepType::Delay => {
            let min = step
                .duration
                .as_deref()
                .and_then(model::duration_ms)
                .unwrap_or(0);
            let max = step
                .max_duration
                .as_deref()
                .and_then(model::duration_ms)
                .unwrap_or(min)
                .max(min);
            let wait = if max > min {
                rand::rng().random_range(min..=max)
            } else {
                min
            };
            let until = now + wait;
            Ok((
                json!({"waitMs": wait, "until": iso(until)}),
                Flow::Next(index + 1, until),
            ))
        }
        StepType::Window => {
            let opens = model::window_opens_at(step, now);
            Ok((
                json!({"inWindow": opens <= now, "actsAt": iso(opens)}),
                Flow::Next(index + 1, opens),
            ))
        }
        StepType::Condition => {
            let matched = condition(state, run, step, now).await?;
            if matched {
                return Ok((json!({"matched": true}), Flow::Next(index + 1, now)));
            }
            match model::otherwise(step) {
                Otherwise::Stop => Ok((json!({"matched": false, "then": "stop"}), Flow::End)),
                Otherwise::Goto(k) => {
                    let to = def
                        .steps
                        .iter()
                        .enumerate()
                        .position(|(i, s)| model::key_of(s, i) == k)
                        .ok_or_else(|| ActError::Fail(format!("no step with key {k}")))?;
                    Ok((
                        json!({"matched": false, "then": format!("goto:{k}")}),
                        Flow::Next(to, now),
                    ))
                }
            }
        }
        StepType::GroupStats => {
            let subj = subj.ok_or_else(|| ActError::Fail("no group chat".into()))?;
            let day_start = day_start(now);
            let q =
                |sql: &'static str| query(sql).bind(run.tenant_id).bind(subj.id).bind(day_start);
            let members = state.db.fetch_i64(query("SELECT COUNT(*) FROM group_chat_member WHERE tenant_id = ? AND group_id = ? AND status = 1").bind(run.tenant_id).bind(subj.id)).await?;
            let joined = state.db.fetch_i64(q("SELECT COUNT(*) FROM group_chat_member WHERE tenant_id = ? AND group_id = ? AND created_at >= ?")).await?;
            let left = state.db.fetch_i64(q("SELECT COUNT(*) FROM group_chat_member WHERE tenant_id = ? AND group_id = ? AND status = 0 AND left_at >= ?")).await?;
            Ok((
                json!({"members": members, "joinedToday": joined, "leftToday": left, "day": crate::automation::day_of(now)}),
                Flow::Next(index + 1, now),
            ))
        }
        // Tags, owner and stage: planned here, made in finish's transaction.
        _ => Ok((Value::Null, Flow::Next(index + 1, now))),
    }
}

/// 00:00 Asia/Shanghai of the day of `ms`.
fn day_start(ms: i64) -> i64 {
    use chrono::TimeZone;
    let tz = crate::automation::shanghai();
    tz.timestamp_millis_opt(ms)
        .single()
        .and_then(|t| t.date_naive().and_hms_opt(0, 0, 0))
        .and_then(|d| tz.from_local_datetime(&d).single())
        .map(|t| t.timestamp_millis())
        .unwrap_or(ms)
}

/// Whether every clause of a condition step holds for the run's customer.
async fn condition(
    state: &AppState,
    run: &RunRow,
    step: &Step,
    now: i64,
) -> Result<bool, ActError> {
    let db = &state.db;
    let (t, c) = (run.tenant_id, run.subject_id);
    for clause in &step.when {
        let holds = if !clause.has_tags.is_empty() || !clause.lacks_tags.is_empty() {
            let wanted = if clause.has_tags.is_empty() {
                &clause.lacks_tags
            } else {
                &clause.has_tags
            };
            let mut q = query(
                "SELECT COUNT(*) FROM customer_tag WHERE tenant_id = ? AND customer_id = ? AND tag_id IN ",
            )
            .bind(t)
            .bind(c);
            q.push_in_list(wanted.iter().copied());
            let n = db.fetch_i64(q).await?;
            if clause.has_tags.is_empty() {
                n == 0
            } else {
                n > 0
            }
        } else if !clause.stage_in.is_empty() {
            let stage: Option<(String,)> = db
                .fetch_optional(
                    query("SELECT stage FROM customer WHERE tenant_id = ? AND id = ?")
                        .bind(t)
                        .bind(c),
                )
                .await?;
            stage.is_some_and(|(s,)| clause.stage_in.contains(&s))
        } else if let Some(days) = clause.no_interaction_days {
            let n = db
                .fetch_i64(
                    query(
                        "SELECT COUNT(*) FROM customer WHERE tenant_id = ? AND id = ? \
                         AND COALESCE(last_active_at, add_time, created_at) <= ?",
                    )
                    .bind(t)
                    .bind(c)
                    .bind(now - days * 86_400_000),
                )
                .await?;
            n > 0
        } else if let Some(field) = &clause.field {
            let Some((_, column)) = model::FIELDS.iter().find(|(n, _)| n == field) else {
                return Err(ActError::Fail(format!("unknown field {field}")));
            };
            let actual = field_value(state, t, c, column).await?;
            model::compare(
                &actual,
                clause.op.as_deref().unwrap_or("eq"),
                clause.value.as_ref(),
            )
        } else {
            true
        };
        if !holds {
            return Ok(false);
        }
    }
    Ok(true)
}

/// A customer column as JSON (text columns as strings, the rest as numbers).
async fn field_value(
    state: &AppState,
    tenant_id: i64,
    customer_id: i64,
    column: &str,
) -> Result<Value, ActError> {
    let numeric = matches!(column, "gender" | "type" | "add_time" | "last_active_at");
    let sql = format!("SELECT {column} FROM customer WHERE tenant_id = ? AND id = ?");
    if numeric {
        let v: Option<(Option<i64>,)> = state
            .db
            .fetch_optional(query(sql).bind(tenant_id).bind(customer_id))
            .await?;
        Ok(v.and_then(|r| r.0).map(Value::from).unwrap_or(Value::Null))
    } else {
        let v: Option<(Option<String>,)> = state
            .db
            .fetch_optional(query(sql).bind(tenant_id).bind(customer_id))
            .await?;
        Ok(v.and_then(|r| r.0).map(Value::from).unwrap_or(Value::Null))
    }
}

fn vars(subj: &Subject, now: i64) -> Vars {
    Vars {
        nickname: subj.name.clone(),
        date: crate::automation::day_of(now),
        staff: subj.owner_name.clone(),
    }
}

/// Mark the step as being made (status 1) with the attempt's start, before the call.
async fn calling(state: &AppState, log: &RunStepRow, now: i64) -> Result<(), ActError> {
    state
        .db
        .execute(
            query("UPDATE workflow_run_step SET status = 1, attempt_started_at = ?, updated_at = ? WHERE id = ?")
                .bind(now)
                .bind(now)
                .bind(log.id),
        )
        .await?;
    Ok(())
}

async fn wecom(state: &AppState, tenant_id: i64) -> Result<TenantWeCom, ActError> {
    client_for(state, tenant_id)
        .await
        .map_err(|e| ActError::Retry(format!("{e:#}")))
}

/// The text of a send: `text`, or one of `texts` — chosen by the run, so a retry picks the same.
fn pick_text(step: &Step, run_id: i64, index: i64) -> Option<String> {
    if !step.texts.is_empty() {
        let n = step.texts.len() as i64;
        let i = (run_id.wrapping_mul(31).wrapping_add(index)).rem_euclid(n);
        return step.texts.get(i as usize).cloned();
    }
    step.text.clone()
}

async fn send_message(
    state: &AppState,
    run: &RunRow,
    log: &RunStepRow,
    step: &Step,
    subj: &Subject,
    now: i64,
) -> Result<Value, ActError> {
    if subj.deleted {
        return Err(ActError::Fail(
            "customer was deleted (no member can message them)".into(),
        ));
    }
    let owner = subj.owner_userid.clone().ok_or_else(|| {
        ActError::Fail(
            if subj.group {
                "group chat has no owner"
            } else {
                "customer has no owner staff"
            }
            .into(),
        )
    })?;
    let wecom = wecom(state, run.tenant_id).await?;
    let content = WelcomeContent {
        text: pick_text(step, run.id, log.step_index),
        material_ids: step.material_ids.clone(),
    };
    let (text, attachments) =
        welcome::to_wecom(state, run.tenant_id, &wecom, &content, &vars(subj, now))
            .await
            .map_err(|e| ActError::Retry(format!("{e:#}")))?;
    let msg = WeComMessage { text, attachments };
    if log.status == step_status::CALLING {
        // An earlier attempt may have reached WeCom: find its message instead of sending again.
        let found = reconcile(
            &wecom,
            &owner,
            log.attempt_started_at,
            &msg,
            Audience::one(&subj.external_id, subj.group),
            &state.db,
            run.tenant_id,
        )
        .await
        .map_err(|e| ActError::Retry(format!("{e:#}")))?;
        if let Some(msgid) = found {
            return Ok(json!({"errcode": 0, "msgid": msgid, "reconciled": true}));
        }
    }
    // The monthly quota counts workflow messages to a customer as WeCom does: one over it is
    // not sent, and the step (and the run) say why.
    if !subj.group
        && let Some(why) =
            crate::operation::mass::over_quota(&state.db, run.tenant_id, subj.id, now)
                .await
                .map_err(|e| ActError::Retry(e.to_string()))?
    {
        return Err(ActError::Fail(why));
    }
    calling(state, log, now).await?;
    let mut req = MsgTemplate {
        sender: owner,
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
            Ok(
                json!({"errcode": 0, "msgid": r.msgid, "failList": r.fail_list, "text": msg.text.map(|t| t.content)}),
            )
        }
        Err(e) => Err(wecom_err(e)),
    }
}

/// An assign_owner step in WeCom: transfer_customer (在职继承) from the current owner to the
/// step's staff member, as customers' transfers and SOP assign steps do; the local owner then
/// changes in [`finish`]'s transaction. No WeCom call when the staff member already owns the
/// customer or the customer has no owner WeCom could hand over from (the change is local).
async fn transfer(
    state: &AppState,
    run: &RunRow,
    log: &RunStepRow,
    step: &Step,
    subj: &Subject,
    now: i64,
) -> Result<Value, ActError> {
    let to = step.staff_id.unwrap_or_default();
    let userid: Option<(String,)> = state
        .db
        .fetch_optional(
            query("SELECT userid FROM staff WHERE tenant_id = ? AND id = ?")
                .bind(run.tenant_id)
                .bind(to),
        )
        .await?;
    let Some((userid,)) = userid else {
        return Err(ActError::Fail(format!("staff {to} not found")));
    };
    let Some(owner) = subj.owner_userid.clone().filter(|_| !subj.deleted) else {
        return Ok(json!({"skipped": "no owner in WeCom to hand over from"}));
    };
    if owner == userid {
        return Ok(json!({"skipped": "already the owner"}));
    }
    let wecom = wecom(state, run.tenant_id).await?;
    calling(state, log, now).await?;
    let list = wecom
        .app
        .transfer_customer(&scrm_wecom::client::TransferCustomerRequest {
            handover_userid: owner.clone(),
            takeover_userid: userid.clone(),
            external_userid: vec![subj.external_id.clone()],
            transfer_success_msg: None,
        })
        .await
        .map_err(wecom_err)?;
    // 40129: a transfer of this customer is already under way (an earlier attempt's); 40100:
    // WeCom already has this takeover — both leave the customer going to `to`.
    match list.first().map(|c| c.errcode) {
        Some(0) | Some(40129) | Some(40100) | None => {}
        Some(code) => {
            return Err(ActError::Fail(format!(
                "transfer_customer refused the customer: errcode {code}"
            )));
        }
    }
    Ok(json!({"errcode": 0, "handover": owner, "takeover": userid}))
}

/// An assign_pool step: the pool picks the member and hands the customer on (see
/// [`crate::automation::traffic`]); the pick is keyed by the run's step, so a retry hands it to
/// the same member. `Err(Err(at))`: no member takes customers before `at`.
async fn pool(
    state: &AppState,
    run: &RunRow,
    log: &RunStepRow,
    step: &Step,
    subj: &Subject,
) -> Result<Value, Result<ActError, i64>> {
    use crate::automation::traffic::{self, AssignError, Source};
    if subj.deleted {
        return Err(Ok(ActError::Fail("customer was deleted".into())));
    }
    let pool_id = step.pool_id.unwrap_or_default();
    let r = traffic::assign(
        state,
        run.tenant_id,
        pool_id,
        run.subject_id,
        &Source {
            kind: "workflow",
            key: Some(format!("wf:{}:{}", run.id, log.step_index)),
        },
    )
    .await;
    match r {
        Ok(v) => Ok(v),
        Err(AssignError::Unavailable(Some(at))) => Err(Err(at)),
        Err(e @ AssignError::Unavailable(None)) | Err(e @ AssignError::Refused(_)) => {
            Err(Ok(ActError::Fail(e.to_string())))
        }
        Err(AssignError::Transient(m)) => Err(Ok(ActError::Retry(m))),
    }
}

async fn remind(
    state: &AppState,
    run: &RunRow,
    log: &RunStepRow,
    step: &Step,
    subj: &Subject,
    now: i64,
) -> Result<Value, ActError> {
    let to: Vec<String> = if step.userids.is_empty() {
        subj.owner_userid.clone().into_iter().collect()
    } else {
        step.userids.clone()
    };
    if to.is_empty() {
        return Err(ActError::Fail("no staff to remind (no owner)".into()));
    }
    let wecom = wecom(state, run.tenant_id).await?;
    let text = welcome::render(step.text.as_deref().unwrap_or_default(), &vars(subj, now));
    calling(state, log, now).await?;
    // App messages go out as the self-built app (its own secret); WeCom's duplicate check
    // keeps a retry from reminding twice.
    let r = wecom
        .agent
        .message_send(&AppMessage {
            touser: to.join("|"),
            toparty: String::new(),
            totag: String::new(),
            agentid: wecom.agent_id,
            content: AppMessageContent::Text {
                text: Text {
                    content: text.clone(),
                },
            },
            safe: None,
            enable_id_trans: None,
            enable_duplicate_check: Some(1),
            duplicate_check_interval: Some(1800),
        })
        .await
        .map_err(wecom_err)?;
    Ok(
        json!({"errcode": 0, "msgid": r.msgid, "invaliduser": r.invaliduser, "to": to, "text": text}),
    )
}

async fn webhook(
    state: &AppState,
    run: &RunRow,
    version: &store::VersionRow,
    log: &RunStepRow,
    step: &Step,
    subj: &Subject,
    now: i64,
) -> Result<Value, ActError> {
    let url = step.url.clone().unwrap_or_default();
    let body = json!({
        "event": "workflow.step",
        "tenantId": run.tenant_id,
        "workflowId": run.workflow_id,
        "version": version.version,
        "runId": run.id,
        "stepKey": log.step_key,
        "subject": {
            "type": if subj.group { "group" } else { "customer" },
            "id": subj.id,
            "externalId": subj.external_id,
            "name": subj.name,
            "ownerUserid": subj.owner_userid,
            "ownerStaffId": subj.owner_id,
        },
        "sentAt": iso(now),
    });
    calling(state, log, now).await?;
    // Guarded against private addresses (crate::outbound) unless SCRM_ALLOW_PRIVATE_URLS.
    let allow = state.config.allow_private_urls;
    static OPEN: std::sync::OnceLock<reqwest::Client> = std::sync::OnceLock::new();
    static GUARDED: std::sync::OnceLock<reqwest::Client> = std::sync::OnceLock::new();
    let client = (if allow { &OPEN } else { &GUARDED }).get_or_init(|| {
        crate::outbound::client(
            reqwest::Client::builder().timeout(std::time::Duration::from_secs(10)),
            allow,
        )
    });
    let refused = |why: String| {
        tracing::warn!(run = run.id, step = log.step_index, reason = %why, "webhook refused by the private-address guard");
        ActError::Fail(format!("webhook: {why}"))
    };
    crate::outbound::check_fetch(allow, &url).map_err(refused)?;
    let r = client
        .post(&url)
        .header(
            "X-Scrm-Idempotency-Key",
            format!("workflow-run-{}-step-{}", run.id, log.step_index),
        )
        .json(&body)
        .send()
        .await
        .map_err(|e| match crate::outbound::refusal(&e) {
            Some(why) => refused(why),
            None => ActError::Retry(format!("webhook: {e}")),
        })?;
    let code = r.status().as_u16();
    match code {
        200..=299 => Ok(json!({"status": code})),
        408 | 429 | 500..=599 => Err(ActError::Retry(format!("webhook answered {code}"))),
        _ => Err(ActError::Fail(format!("webhook answered {code}"))),
    }
}

/// Log the step, make its local effect, and move the run on — one transaction. `outcome` is the
/// step's result and where to go, or why it failed (the run fails).
async fn finish(
    state: &AppState,
    run: &RunRow,
    log: &RunStepRow,
    def: &Definition,
    outcome: Result<(Value, Flow), String>,
    now: i64,
) -> Result<(), JobError> {
    let mut tx = state.db.begin().await?;
    let current: Option<(i64,)> = tx
        .fetch_optional(query("SELECT status FROM workflow_run WHERE id = ?").bind(run.id))
        .await?;
    let run_status = current.map(|r| r.0).unwrap_or(status::CANCELLED);
    let index = log.step_index as usize;
    let step = &def.steps[index];
    let mut touched = false;
    let outcome = match outcome {
        Ok((result, flow)) if run_status != status::CANCELLED => {
            match effect(state, &mut tx, run, step, &result, now).await {
                Ok(Some(mut effect_result)) => {
                    touched = true;
                    // Keep what WeCom answered (an assign step's transfer) beside the effect.
                    if let (Some(e), Some(r)) = (effect_result.as_object_mut(), result.as_object())
                    {
                        for (k, v) in r {
                            e.entry(k.clone()).or_insert_with(|| v.clone());
                        }
                    }
                    Ok((effect_result, flow))
                }
                Ok(None) => Ok((result, flow)),
                Err(ActError::Fail(m)) => Err(m),
                Err(ActError::Retry(m)) => return Err(JobError::Retryable(m)),
            }
        }
        other => other,
    };
    let (mut st, result, error, next) = match outcome {
        Ok((result, flow)) => (step_status::DONE, result, None, flow),
        Err(m) => (step_status::FAILED, Value::Null, Some(m), Flow::End),
    };
    // Cancelled while this step ran: an external effect made is logged as done; anything
    // else is not made and logged as cancelled.
    let external = matches!(
        step.kind,
        StepType::SendMessage
            | StepType::RemindStaff
            | StepType::Webhook
            | StepType::AssignOwner
            | StepType::AssignPool
    );
    if run_status == status::CANCELLED && !external {
        st = step_status::CANCELLED;
    }
    let n = tx
        .execute(
            query("UPDATE workflow_run_step SET status = ?, result = ?, error = ?, finished_at = ?, updated_at = ? WHERE id = ? AND status IN (0, 1)")
                .bind(st)
                .bind((!result.is_null()).then(|| result.to_string()))
                .bind(error.clone())
                .bind(now)
                .bind(now)
                .bind(log.id),
        )
        .await?
        .rows_affected;
    if n == 0 {
        // Another attempt logged it already.
        tx.rollback().await?;
        return Ok(());
    }
    // A message that reached a customer counts toward the monthly quota (as SOP sends do).
    if st == step_status::DONE
        && step.kind == StepType::SendMessage
        && run.subject_type == 1
        && result["failList"].as_array().is_none_or(|l| l.is_empty())
    {
        crate::operation::mass::store::log_mass_message(
            &mut tx,
            run.tenant_id,
            run.subject_id,
            "workflow",
            log.id,
            now,
        )
        .await?;
    }
    let mut paused = false;
    match next {
        Flow::Next(to, at) if to < def.steps.len() && st == step_status::DONE => {
            if run_status == status::CANCELLED {
                tx.commit().await?;
                return Ok(());
            }
            let s = &def.steps[to];
            tx.execute(
                query("INSERT INTO workflow_run_step (tenant_id, run_id, step_index, step_key, step_type, status, due_at, created_at, updated_at) VALUES (?, ?, ?, ?, ?, 0, ?, ?, ?)")
                    .bind(run.tenant_id)
                    .bind(run.id)
                    .bind(to as i64)
                    .bind(model::key_of(s, to))
                    .bind(s.kind.as_str())
                    .bind(at)
                    .bind(now)
                    .bind(now),
            )
            .await?;
            store::enqueue(
                &state.jobs,
                &mut tx,
                vec![store::step_job(run.tenant_id, run.id, to as i64, at)?],
            )
            .await?;
            tx.execute(
                query("UPDATE workflow_run SET status = CASE WHEN status = 0 THEN 1 ELSE status END, started_at = COALESCE(started_at, ?), current_step = ?, next_step_at = ?, updated_at = ? WHERE id = ?")
                    .bind(now)
                    .bind(to as i64)
                    .bind(at)
                    .bind(now)
                    .bind(run.id),
            )
            .await?;
            paused = run_status == status::PAUSED;
        }
        _ => {
            let fin = if st == step_status::FAILED {
                status::FAILED
            } else {
                status::DONE
            };
            tx.execute(
                query("UPDATE workflow_run SET status = ?, error = ?, started_at = COALESCE(started_at, ?), next_step_at = NULL, finished_at = ?, updated_at = ? WHERE id = ? AND status IN (0, 1, 5)")
                    .bind(fin)
                    .bind(error)
                    .bind(now)
                    .bind(now)
                    .bind(now)
                    .bind(run.id),
            )
            .await?;
        }
    }
    tx.commit().await?;
    if paused {
        // Paused while this step ran: hold the next one too.
        state
            .jobs
            .pause(
                Scope::Tenant(run.tenant_id),
                &Target::Group(store::group(run.id)),
            )
            .await
            .map_err(JobError::retryable)?;
    }
    if touched {
        crate::customers::cache::invalidate(state, run.tenant_id, &[run.subject_id]).await;
    }
    Ok(())
}

/// The local effect of a tag, untag, assign or stage step, in `tx`; `None` for other steps.
async fn effect(
    state: &AppState,
    tx: &mut Tx,
    run: &RunRow,
    step: &Step,
    result: &Value,
    now: i64,
) -> Result<Option<Value>, ActError> {
    let (t, c) = (run.tenant_id, run.subject_id);
    match step.kind {
        StepType::AddTag | StepType::RemoveTag => {
            if crate::customers::store::lock(tx, t, c).await?.is_none() {
                return Err(ActError::Fail("customer not found".into()));
            }
            let unknown = crate::customers::tags::unknown_tags(tx, t, &step.tag_ids).await?;
            let known: Vec<i64> = step
                .tag_ids
                .iter()
                .copied()
                .filter(|x| !unknown.contains(x))
                .collect();
            if known.is_empty() {
                return Err(ActError::Fail(format!("tags {unknown:?} no longer exist")));
            }
            let changed = if step.kind == StepType::AddTag {
                crate::customers::tags::add_to_customer(tx, t, c, &known, None, now).await?
            } else {
                crate::customers::tags::remove_from_customer(tx, t, c, &known, None, now).await?
            };
            Pushes::new(&state.jobs, tx, t)
                .await?
                .customer_tags(tx, c, &changed)
                .await
                .map_err(|e| ActError::Retry(e.to_string()))?;
            let key = if step.kind == StepType::AddTag {
                "added"
            } else {
                "removed"
            };
            Ok(Some(json!({key: changed, "missingTagIds": unknown})))
        }
        StepType::AssignOwner => {
            let to = step.staff_id.unwrap_or_default();
            if !crate::customers::store::staff_exists(tx, t, to).await? {
                return Err(ActError::Fail(format!("staff {to} not found")));
            }
            let reason = format!("workflow {} run {}", run.workflow_id, run.id);
            // WeCom took the transfer (在职继承): recorded as such; otherwise a local assignment.
            let kind = if result.get("takeover").is_some() {
                "on_job"
            } else {
                "assign"
            };
            let transfer = crate::customers::transfer::assign_owner(
                tx,
                t,
                c,
                to,
                kind,
                Some(&reason),
                None,
                now,
            )
            .await?;
            Ok(Some(
                json!({"staffId": to, "transferId": transfer, "changed": transfer.is_some()}),
            ))
        }
        StepType::SetStage => {
            let to = step.stage.clone().unwrap_or_default();
            let Some(before) = crate::customers::store::lock(tx, t, c).await? else {
                return Err(ActError::Fail("customer not found".into()));
            };
            crate::customers::followups::check_stage(tx, t, &to)
                .await
                .map_err(|e| ActError::Fail(format!("stage {to}: {e}")))?;
            if before.stage != to {
                tx.execute(query("UPDATE customer SET stage = ?, version = version + 1, updated_at = ? WHERE tenant_id = ? AND id = ?").bind(to.as_str()).bind(now).bind(t).bind(c)).await?;
                crate::customers::followups::stage_changed(tx, t, c, &before.stage, &to).await?;
            }
            Ok(Some(json!({"from": before.stage, "to": to})))
        }
        _ => Ok(None),
    }
}

/// Pause, resume or cancel a run of a tenant. Returns whether it changed.
pub async fn control(
    state: &AppState,
    tenant_id: i64,
    run_id: i64,
    action: &str,
) -> anyhow::Result<Option<bool>> {
    let Some(r) = store::run(&state.db, run_id)
        .await?
        .filter(|r| r.tenant_id == tenant_id)
    else {
        return Ok(None);
    };
    let now = crate::state::now_ms();
    let target = Target::Group(store::group(r.id));
    let scope = Scope::Tenant(tenant_id);
    let changed = match (action, r.status) {
        ("pause", status::PENDING | status::RUNNING) => {
            let n = state.db.execute(query("UPDATE workflow_run SET status = 5, paused_at = ?, updated_at = ? WHERE id = ? AND status IN (0, 1)").bind(now).bind(now).bind(r.id)).await?.rows_affected;
            state.jobs.pause(scope, &target).await?;
            n > 0
        }
        ("resume", status::PAUSED) => {
            let back = if r.started_at.is_some() {
                status::RUNNING
            } else {
                status::PENDING
            };
            let n = state.db.execute(query("UPDATE workflow_run SET status = ?, paused_at = NULL, updated_at = ? WHERE id = ? AND status = 5").bind(back).bind(now).bind(r.id)).await?.rows_affected;
            // A step that fell due while paused runs now; a later one keeps its time.
            state.jobs.resume(scope, &target, false).await?;
            n > 0
        }
        ("cancel", status::PENDING | status::RUNNING | status::PAUSED) => {
            let n = state.db.execute(query("UPDATE workflow_run SET status = 4, next_step_at = NULL, finished_at = ?, updated_at = ? WHERE id = ? AND status IN (0, 1, 5)").bind(now).bind(now).bind(r.id)).await?.rows_affected;
            state.jobs.cancel(scope, &target).await?;
            state.db.execute(query("UPDATE workflow_run_step SET status = 4, updated_at = ? WHERE run_id = ? AND status = 0").bind(now).bind(r.id)).await?;
            n > 0
        }
        _ => false,
    };
    Ok(Some(changed))
}

/// Whether a run in `status` may take `action`.
pub fn allowed(action: &str, status: i64) -> bool {
    matches!(
        (action, status),
        ("pause", status::PENDING | status::RUNNING)
            | ("resume", status::PAUSED)
            | ("cancel", status::PENDING | status::RUNNING | status::PAUSED)
    )
}

//! What starts runs: domain events (customer added, tag added, joined group, customer deleted,
//! stage changed) from the events
//! relay — the same stream SOPs use, written in the transaction of the change that caused
//! them — and a job engine schedule per published scheduled workflow. Starting is idempotent by
//! the run key (one run per subject per version, and per tick for schedules), so a relayed
//! event delivered twice starts nothing the second time.

use std::sync::OnceLock;

use scrm_db::query;
use scrm_jobs::{JobContext, JobError, JobOutcome, Schedule};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::model::{Subject, TriggerType};
use super::store::{self, Start};
use crate::events::{self, Event, kind};
use crate::state::AppState;

/// Job kind of a scheduled workflow's tick.
pub const TICK: &str = "automation.workflow.tick";

/// Subscribe once per process (several engines may be built, e.g. in tests).
pub fn subscribe(state: &AppState) {
    static DONE: OnceLock<()> = OnceLock::new();
    if DONE.set(()).is_err() {
        return;
    }
    for pattern in [
        kind::CUSTOMER_CREATED,
        kind::CUSTOMER_TAG_ADDED,
        kind::GROUP_MEMBER_JOINED,
        kind::CUSTOMER_DELETED,
        kind::CUSTOMER_STAGE_CHANGED,
    ] {
        let s = state.clone();
        events::subscribe(
            pattern,
            std::sync::Arc::new(move |e: Event| {
                let s = s.clone();
                Box::pin(async move { on_event(&s, &e).await.map(|_| ()) })
            }),
        );
    }
}

fn ids(v: &Value, key: &str) -> Vec<i64> {
    v.get(key)
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_i64).collect())
        .unwrap_or_default()
}

/// Start the runs an event triggers; returns how many started.
pub async fn on_event(state: &AppState, e: &Event) -> anyhow::Result<usize> {
    let (trigger, customer_id) = match e.event_type.as_str() {
        kind::CUSTOMER_CREATED => (TriggerType::CustomerAdded, e.aggregate_id.parse().ok()),
        kind::CUSTOMER_TAG_ADDED => (
            TriggerType::TagAdded,
            e.data
                .get("customerId")
                .and_then(Value::as_i64)
                .or(e.aggregate_id.parse().ok()),
        ),
        kind::GROUP_MEMBER_JOINED => (
            TriggerType::JoinedGroup,
            e.data.get("customerId").and_then(Value::as_i64),
        ),
        // A friendship ended (the callback's event carries who deleted whom); a customer row
        // deleted through the API (no `deletedBy`) has nothing left to run on.
        kind::CUSTOMER_DELETED if e.data.get("deletedBy").is_some() => (
            TriggerType::CustomerDeleted,
            e.data.get("customerId").and_then(Value::as_i64),
        ),
        kind::CUSTOMER_STAGE_CHANGED => (
            TriggerType::StageChanged,
            e.data
                .get("customerId")
                .and_then(Value::as_i64)
                .or(e.aggregate_id.parse().ok()),
        ),
        _ => return Ok(0),
    };
    let Some(customer_id) = customer_id else {
        return Ok(0);
    };
    // Deletions and stage changes happen again to the same customer: each event is its own
    // occasion (the outbox id, so a redelivered event still starts nothing new).
    let occasion = matches!(
        trigger,
        TriggerType::CustomerDeleted | TriggerType::StageChanged
    )
    .then_some(e.seq);
    let deleted_by = e.data.get("deletedBy").and_then(Value::as_str);
    let stage_to = e.data.get("to").and_then(Value::as_str);
    let workflows = store::published_for(&state.db, e.tenant_id, trigger.as_str()).await?;
    if workflows.is_empty() {
        return Ok(0);
    }
    // When the event happened: a workflow reacts to what happens after it was published, not
    // to events still in the outbox from before (a sync's backlog, say).
    let happened_at = match state
        .db
        .fetch_optional::<(i64,)>(
            query("SELECT created_at FROM event_outbox WHERE id = ?").bind(e.seq),
        )
        .await?
    {
        Some((at,)) => at,
        None => chrono::DateTime::parse_from_rfc3339(&e.timestamp)
            .map(|t| t.timestamp_millis() + 999)
            .unwrap_or(i64::MAX),
    };
    let tags = ids(&e.data, "tagIds");
    let group = e.data.get("groupId").and_then(Value::as_i64);
    let mut started = 0;
    for (w, v) in workflows {
        if w.published_at.is_some_and(|p| p > happened_at) {
            continue;
        }
        let Ok(def) = v.definition() else { continue };
        let t = &def.trigger;
        let matches = match trigger {
            TriggerType::TagAdded => {
                t.tag_ids.is_empty() || t.tag_ids.iter().any(|x| tags.contains(x))
            }
            TriggerType::JoinedGroup => {
                t.group_ids.is_empty() || group.is_some_and(|g| t.group_ids.contains(&g))
            }
            TriggerType::CustomerDeleted => t
                .deleted_by
                .as_deref()
                .is_none_or(|by| Some(by) == deleted_by),
            TriggerType::StageChanged => {
                t.stages.is_empty() || stage_to.is_some_and(|s| t.stages.iter().any(|x| x == s))
            }
            _ => true,
        };
        if !matches {
            continue;
        }
        let s = store::start_runs(
            &state.db,
            &state.jobs,
            &Start {
                version: &v,
                definition: &def,
                trigger_type: trigger.as_str(),
                trigger_ref: Some(e.event_id.clone()),
                occasion,
                at: crate::state::now_ms(),
            },
            &[customer_id],
        )
        .await?;
        started += s.run_ids.len();
    }
    Ok(started)
}

/// The schedule name of a workflow.
pub fn schedule_name(workflow_id: i64) -> String {
    format!("workflow:{workflow_id}")
}

/// The payload of a tick: which version, which tick, and how far through the audience.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct TickPayload {
    pub workflow_id: i64,
    pub version_id: i64,
    pub tick: Option<i64>,
    pub after: i64,
    /// A condition's check: the start of its window (the mark when the check began).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<i64>,
}

/// Make the engine's schedule match the workflow: a published schedule workflow has one
/// (firing [`TICK`] on its cron), anything else none.
pub async fn sync_schedule(
    state: &AppState,
    tenant_id: i64,
    workflow_id: i64,
    published: Option<(i64, &str)>,
) -> anyhow::Result<()> {
    match published {
        Some((version_id, cron)) => {
            let mut s = Schedule::new(&schedule_name(workflow_id), cron, TICK);
            s.tenant_id = Some(tenant_id);
            s.payload = json!({"workflowId": workflow_id, "versionId": version_id});
            state.jobs.upsert_schedule(&s).await?;
        }
        None => {
            state
                .jobs
                .delete_schedule(&schedule_name(workflow_id))
                .await?;
        }
    }
    Ok(())
}

/// Subjects started per tick run (the job reschedules itself for the next page).
const TICK_PAGE: i64 = 2_000;

/// `automation.workflow.tick`: start a run for each subject of the audience, a page at a time.
pub async fn run_tick(state: AppState, ctx: JobContext, p: Value) -> Result<JobOutcome, JobError> {
    let mut p: TickPayload = serde_json::from_value(p)?;
    let Some(tenant_id) = ctx.tenant_id else {
        return Ok(JobOutcome::Done);
    };
    let Some(w) = store::workflow(&state.db, tenant_id, p.workflow_id).await? else {
        return Ok(JobOutcome::Done);
    };
    if w.status != super::status::workflow::PUBLISHED
        || w.published_version_id != Some(p.version_id)
    {
        return Ok(JobOutcome::Done);
    }
    let Some(v) = store::version_by_id(&state.db, p.version_id).await? else {
        return Ok(JobOutcome::Done);
    };
    let def = v.definition().map_err(JobError::permanent)?;
    if def.trigger.kind == TriggerType::Condition {
        return condition_check(&state, &ctx, tenant_id, p, &v, &def).await;
    }
    let tick = *p.tick.get_or_insert(ctx.run_at);
    let t = &def.trigger;
    let subjects: Vec<i64> = if t.subject() == Subject::Group {
        let mut q = query("SELECT id FROM group_chat WHERE tenant_id = ? AND id > ?")
            .bind(tenant_id)
            .bind(p.after);
        if !t.group_ids.is_empty() {
            q.push_sql(" AND id IN ");
            q.push_in_list(t.group_ids.iter().copied());
        }
        q.push_sql(" ORDER BY id LIMIT ?").push_bind(TICK_PAGE);
        state
            .db
            .fetch_all::<(i64,)>(q)
            .await?
            .into_iter()
            .map(|r| r.0)
            .collect()
    } else {
        let mut q = query(
            "SELECT c.id FROM customer c WHERE c.tenant_id = ? AND c.id > ? AND c.status = 1 AND c.blacklisted = 0",
        )
        .bind(tenant_id)
        .bind(p.after);
        if !t.tag_ids.is_empty() {
            q.push_sql(" AND EXISTS (SELECT 1 FROM customer_tag ct WHERE ct.tenant_id = c.tenant_id AND ct.customer_id = c.id AND ct.tag_id IN ");
            q.push_in_list(t.tag_ids.iter().copied());
            q.push_sql(")");
        }
        q.push_sql(" ORDER BY c.id LIMIT ?").push_bind(TICK_PAGE);
        state
            .db
            .fetch_all::<(i64,)>(q)
            .await?
            .into_iter()
            .map(|r| r.0)
            .collect()
    };
    if subjects.is_empty() {
        return Ok(JobOutcome::Done);
    }
    store::start_runs(
        &state.db,
        &state.jobs,
        &Start {
            version: &v,
            definition: &def,
            trigger_type: TriggerType::Schedule.as_str(),
            trigger_ref: Some(format!("tick:{tick}")),
            occasion: Some(tick),
            at: ctx.now_ms(),
        },
        &subjects,
    )
    .await?;
    p.after = *subjects.last().unwrap_or(&p.after);
    if (subjects.len() as i64) < TICK_PAGE {
        return Ok(JobOutcome::Done);
    }
    Ok(JobOutcome::Reschedule {
        at: ctx.now_ms(),
        payload: serde_json::to_value(&p)?,
    })
}

/// A condition trigger's check (its schedule's tick): start a run for each customer whose
/// moment — added + `addedDaysAgo` days — fell after the last check's mark and up to this tick,
/// a page at a time; the mark moves to the tick after the last page. A late check (the service
/// was down) covers everything since the mark; a check repeated after a crash starts nobody
/// twice (one run per customer per version).
async fn condition_check(
    state: &AppState,
    ctx: &JobContext,
    tenant_id: i64,
    mut p: TickPayload,
    v: &store::VersionRow,
    def: &super::model::Definition,
) -> Result<JobOutcome, JobError> {
    let Some(days) = def.trigger.added_days_ago else {
        return Ok(JobOutcome::Done);
    };
    let tick = *p.tick.get_or_insert(ctx.run_at);
    let from = match p.from {
        Some(from) => from,
        None => {
            let mark = state
                .db
                .fetch_optional::<(Option<i64>,)>(
                    query("SELECT condition_checked_until FROM workflow WHERE tenant_id = ? AND id = ?")
                        .bind(tenant_id)
                        .bind(p.workflow_id),
                )
                .await?
                .and_then(|r| r.0);
            *p.from.insert(mark.unwrap_or(tick))
        }
    };
    if from >= tick {
        return Ok(JobOutcome::Done);
    }
    let span = days * 86_400_000;
    let subjects: Vec<i64> = state
        .db
        .fetch_all::<(i64,)>(
            query(
                "SELECT c.id FROM customer c WHERE c.tenant_id = ? AND c.add_time > ? AND c.add_time <= ? \
                 AND c.status = 1 AND c.blacklisted = 0 AND c.id > ? ORDER BY c.id LIMIT ?",
            )
            .bind(tenant_id)
            .bind(from - span)
            .bind(tick - span)
            .bind(p.after)
            .bind(TICK_PAGE),
        )
        .await?
        .into_iter()
        .map(|r| r.0)
        .collect();
    if !subjects.is_empty() {
        store::start_runs(
            &state.db,
            &state.jobs,
            &Start {
                version: v,
                definition: def,
                trigger_type: TriggerType::Condition.as_str(),
                trigger_ref: Some(format!("added {days} days ago")),
                occasion: None,
                at: ctx.now_ms(),
            },
            &subjects,
        )
        .await?;
    }
    if subjects.len() as i64 == TICK_PAGE {
        p.after = *subjects.last().unwrap_or(&p.after);
        return Ok(JobOutcome::Reschedule {
            at: ctx.now_ms(),
            payload: serde_json::to_value(&p)?,
        });
    }
    state
        .db
        .execute(
            query(
                "UPDATE workflow SET condition_checked_until = ? WHERE tenant_id = ? AND id = ? \
                 AND (condition_checked_until IS NULL OR condition_checked_until < ?)",
            )
            .bind(tick)
            .bind(tenant_id)
            .bind(p.workflow_id)
            .bind(tick),
        )
        .await?;
    Ok(JobOutcome::Done)
}

//! Seed 002's cron tasks, listed and switchable through the API: the job engine's stored
//! schedules (`job_schedule`) — the built-in ones every tenant shares (WeCom sync, the
//! channel-code daily reset, export cleanup …) and the tenant's own (scheduled workflows, e.g.
//! a group push to customer groups every morning) — with their last run.
//!
//! Switching a schedule off stops its ticks; switching it on again starts from the next tick
//! after now (missed ticks are not made up). A built-in schedule is shared by every tenant, so
//! switching one needs `system:jobs:manage` besides `automation:task:manage`; a workflow's
//! schedule follows its workflow (publish / disable it instead).

use axum::extract::State;
use axum::http::{Method, StatusCode};
use scrm_db::query;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::audit;
use crate::auth::CurrentUser;
use crate::auth::permissions as perm;
use crate::http::envelope::{Reply, ok};
use crate::http::extract::{ApiPath, ApiQuery};
use crate::http::routes::{Access, Routes};
use crate::http::{ApiError, ApiResult};
use crate::state::{AppState, iso};

/// The cron-task routes.
pub fn routes(state: &AppState) -> Routes {
    Routes::new(state, "automation")
        .route(
            Method::GET,
            "/api/v1/automation/tasks/schedules",
            Access::Permission(perm::AUTOMATION_TASK_VIEW),
            "Cron tasks: the built-in schedules and the tenant's own (scope system / tenant), with their next and last run (enabled: true/false filter)",
            list,
        )
        .route(
            Method::POST,
            "/api/v1/automation/tasks/schedules/{name}/enable",
            Access::Permission(perm::AUTOMATION_TASK_MANAGE),
            "Switch a cron task on (from its next tick after now)",
            enable,
        )
        .route(
            Method::POST,
            "/api/v1/automation/tasks/schedules/{name}/disable",
            Access::Permission(perm::AUTOMATION_TASK_MANAGE),
            "Switch a cron task off",
            disable,
        )
}

#[derive(sqlx::FromRow)]
struct Row {
    name: String,
    cron: String,
    timezone: String,
    kind: String,
    tenant_id: Option<i64>,
    enabled: i64,
    next_fire_at: i64,
    last_fire_at: Option<i64>,
    last_job_id: Option<i64>,
}

const COLUMNS: &str =
    "name, cron, timezone, kind, tenant_id, enabled, next_fire_at, last_fire_at, last_job_id";

/// The workflow a schedule belongs to (`workflow:<id>`).
fn workflow_of(name: &str) -> Option<i64> {
    name.strip_prefix("workflow:")?.parse().ok()
}

/// What a job kind does, in words (seed 002's task names where it has them).
fn describe(kind: &str) -> &'static str {
    match kind {
        "automation.channel_code.daily" => {
            "Channel codes back to their staff at midnight (daily add limits)"
        }
        "automation.workflow.tick" => {
            "Scheduled workflow (per customer or group chat, e.g. a group push)"
        }
        k if k.starts_with("wework.sync") || k.starts_with("integration.") => {
            "Data sync with WeCom"
        }
        k if k.starts_with("customers.exports") => "Delete expired customer exports",
        k if k.starts_with("customers.") => "Customer statistics and maintenance",
        k if k.starts_with("devices.") => "Device accounts (likes, moments, friends)",
        k if k.starts_with("operation.") => "Operations (mass sends, SOPs)",
        k if k.starts_with("jobs.") || k.starts_with("scrm.") => "Job engine maintenance",
        _ => "Scheduled job",
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ListQuery {
    enabled: Option<bool>,
}

pub async fn list(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> ApiResult<Reply<Value>> {
    let mut sql = query(format!(
        "SELECT {COLUMNS} FROM job_schedule WHERE (tenant_id IS NULL OR tenant_id = ?)"
    ))
    .bind(user.tenant_id);
    if let Some(e) = q.enabled {
        sql.push_sql(" AND enabled = ?").push_bind(e as i64);
    }
    sql.push_sql(" ORDER BY name");
    let rows: Vec<Row> = state.db.fetch_all(sql).await?;
    let mut list = Vec::with_capacity(rows.len());
    for r in rows {
        let last: Option<(i64, Option<String>, Option<i64>)> = match r.last_job_id {
            Some(j) => {
                state
                    .db
                    .fetch_optional(
                        query("SELECT state, last_error, finished_at FROM job WHERE id = ?")
                            .bind(j),
                    )
                    .await?
            }
            None => None,
        };
        list.push(view(&r, last));
    }
    Ok(ok(json!({"list": list, "total": list.len()})))
}

fn job_state(s: i64) -> &'static str {
    match s {
        0 => "pending",
        1 => "running",
        2 => "done",
        3 => "failed",
        4 => "cancelled",
        _ => "dead",
    }
}

fn view(r: &Row, last: Option<(i64, Option<String>, Option<i64>)>) -> Value {
    json!({
        "name": r.name,
        "scope": if r.tenant_id.is_some() { "tenant" } else { "system" },
        "kind": r.kind,
        "description": describe(&r.kind),
        "cron": r.cron,
        "timezone": r.timezone,
        "enabled": r.enabled == 1,
        "workflowId": workflow_of(&r.name),
        "nextFireAt": (r.enabled == 1).then(|| iso(r.next_fire_at)),
        "lastFireAt": r.last_fire_at.map(iso),
        "lastJob": r.last_job_id.map(|id| json!({
            "id": id,
            "state": last.as_ref().map(|l| job_state(l.0)),
            "lastError": last.as_ref().and_then(|l| l.1.clone()),
            "finishedAt": last.as_ref().and_then(|l| l.2).map(iso),
        })),
    })
}

async fn switch(state: &AppState, user: &CurrentUser, name: &str, on: bool) -> ApiResult<Value> {
    let row: Option<Row> = state
        .db
        .fetch_optional(
            query(format!(
                "SELECT {COLUMNS} FROM job_schedule WHERE name = ? AND (tenant_id IS NULL OR tenant_id = ?)"
            ))
            .bind(name)
            .bind(user.tenant_id),
        )
        .await?;
    let Some(row) = row else {
        return Err(ApiError::NotFound("schedule"));
    };
    if row.tenant_id.is_none() && !user.can(perm::JOBS_MANAGE) {
        return Err(ApiError::Forbidden(perm::JOBS_MANAGE.to_string()));
    }
    if let Some(w) = workflow_of(&row.name) {
        return Err(ApiError::domain(
            StatusCode::CONFLICT,
            "SCHEDULE_OWNED_BY_WORKFLOW",
            format!(
                "this schedule follows workflow {w}: publish or disable the workflow (POST /api/v1/automation/workflows/{w}/disable)"
            ),
        ));
    }
    let now = state.jobs.now_ms();
    let next = if on {
        scrm_jobs::cron::next_after(&row.cron, &row.timezone, now)
            .map_err(|e| anyhow::anyhow!("stored cron {:?}: {e}", row.cron))?
    } else {
        row.next_fire_at
    };
    let mut tx = state.db.begin().await?;
    tx.execute(
        query(
            "UPDATE job_schedule SET enabled = ?, next_fire_at = ?, updated_at = ? WHERE name = ?",
        )
        .bind(on as i64)
        .bind(next)
        .bind(now)
        .bind(name),
    )
    .await?;
    audit::record(
        &mut tx,
        user,
        if on {
            "schedule.enable"
        } else {
            "schedule.disable"
        },
        "schedule",
        name,
        json!({"kind": row.kind, "cron": row.cron}),
    )
    .await?;
    tx.commit().await?;
    // The engine sleeps until the earliest tick it knew of: wake it for the new one.
    state.jobs.wake().await;
    let updated = Row {
        enabled: on as i64,
        next_fire_at: next,
        ..row
    };
    Ok(view(&updated, None))
}

pub async fn enable(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiPath(name): ApiPath<String>,
) -> ApiResult<Reply<Value>> {
    Ok(ok(switch(&state, &user, &name, true).await?))
}

pub async fn disable(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiPath(name): ApiPath<String>,
) -> ApiResult<Reply<Value>> {
    Ok(ok(switch(&state, &user, &name, false).await?))
}

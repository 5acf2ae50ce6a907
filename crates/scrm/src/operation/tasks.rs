//! What the three send APIs share: checking a target and a sender, storing a task with its
//! start job in one transaction, cancelling, and parsing times the seeds' ways.

use axum::http::StatusCode;
use scrm_db::query;
use scrm_jobs::{Scope, Target as JobTarget};
use serde_json::json;

use crate::audit;
use crate::auth::CurrentUser;
use crate::http::{ApiError, ApiResult};
use crate::operation::mass::engine::{group, start_job};
use crate::operation::mass::poll::cancel_job;
use crate::operation::mass::status;
use crate::operation::mass::store::{self, NewTask, Target, TaskRow};
use crate::state::{AppState, now_ms};

/// A time as ISO 8601: with an offset (`2023-10-26T17:00:00Z`) or without one
/// (`2025-11-11T00:00:00`, seed 000's example, read as China time, the seeds' zone).
pub fn parse_time(field: &str, s: &str) -> ApiResult<i64> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Ok(t.timestamp_millis());
    }
    for fmt in ["%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S"] {
        if let Ok(naive) = chrono::NaiveDateTime::parse_from_str(s, fmt) {
            return Ok(naive.and_utc().timestamp_millis() - 8 * 3600 * 1000);
        }
    }
    Err(ApiError::field(field, "must be an ISO 8601 time"))
}

/// Check target ids are positive and not absurdly many; at least one customer must be sendable.
pub async fn check_target(state: &AppState, tenant_id: i64, target: &Target) -> ApiResult<()> {
    for (name, ids) in [
        ("target.tagIds", &target.tag_ids),
        ("target.groupIds", &target.group_ids),
        ("target.customerIds", &target.customer_ids),
    ] {
        if ids.iter().any(|i| *i <= 0) {
            return Err(ApiError::field(name, "ids are positive integers"));
        }
        if ids.len() > 100_000 {
            return Err(ApiError::field(name, "at most 100,000 ids"));
        }
    }
    if target.is_empty() {
        return Err(ApiError::domain(
            StatusCode::UNPROCESSABLE_ENTITY,
            "TARGET_CUSTOMERS_EMPTY",
            "the target selects no customer",
        ));
    }
    if store::count_sendable(&state.db, tenant_id, target).await? == 0 {
        return Err(ApiError::domain(
            StatusCode::UNPROCESSABLE_ENTITY,
            "TARGET_CUSTOMERS_EMPTY",
            "no customer matches the target (or all are blacklisted or deleted)",
        ));
    }
    Ok(())
}

/// Store a task and, when `start_at` is given, its start job — one transaction, audited.
pub async fn create(
    state: &AppState,
    user: &CurrentUser,
    task: NewTask,
    start_at: Option<i64>,
) -> ApiResult<TaskRow> {
    let now = now_ms();
    let mut tx = state.db.begin().await?;
    let id = store::insert_task(&mut tx, user.tenant_id, user.id, &task, now).await?;
    if let Some(at) = start_at {
        let job = start_job(user.tenant_id, id, at).map_err(anyhow::Error::new)?;
        state
            .jobs
            .enqueue(&mut tx, job)
            .await
            .map_err(anyhow::Error::new)?;
    }
    audit::record(
        &mut tx,
        user,
        &format!("{}.create", task.source),
        "group_send_task",
        id,
        json!({"taskName": task.task_name, "taskType": task.task_type, "scheduledTime": task.scheduled_time}),
    )
    .await?;
    tx.commit().await?;
    store::get_task(&state.db, user.tenant_id, id)
        .await?
        .ok_or(ApiError::NotFound("task"))
}

/// Start a stored PENDING task now or at its scheduled time (seed 000's execute).
pub async fn execute(
    state: &AppState,
    user: &CurrentUser,
    task: &TaskRow,
    immediate: bool,
) -> ApiResult<()> {
    if task.status != status::PENDING {
        return Err(ApiError::domain(
            StatusCode::CONFLICT,
            "TASK_STATE_CONFLICT",
            format!("task is {}, not waiting to run", task.status),
        ));
    }
    let now = now_ms();
    let at = if immediate {
        now
    } else {
        task.scheduled_time.ok_or_else(|| {
            ApiError::field(
                "immediate",
                "the task has no scheduledTime; execute it immediately",
            )
        })?
    };
    let mut tx = state.db.begin().await?;
    let job = start_job(task.tenant_id, task.id, at).map_err(anyhow::Error::new)?;
    let enq = state
        .jobs
        .enqueue(&mut tx, job)
        .await
        .map_err(anyhow::Error::new)?;
    audit::record(
        &mut tx,
        user,
        "mass_task.execute",
        "group_send_task",
        task.id,
        json!({"immediate": immediate}),
    )
    .await?;
    tx.commit().await?;
    if immediate && !enq.created {
        // Scheduled before: run the waiting start job now.
        state
            .jobs
            .retry(Scope::Tenant(task.tenant_id), &JobTarget::Ids(vec![enq.id]))
            .await
            .map_err(anyhow::Error::new)?;
    }
    Ok(())
}

/// Cancel a task: stop its jobs, then let the cancel job withdraw what WeCom already has.
pub async fn cancel(state: &AppState, user: &CurrentUser, task: &TaskRow) -> ApiResult<()> {
    if status::is_final(&task.status) {
        return Err(ApiError::domain(
            StatusCode::CONFLICT,
            "TASK_STATE_CONFLICT",
            format!("task is already {}", task.status),
        ));
    }
    let now = now_ms();
    let mut tx = state.db.begin().await?;
    let n = tx
        .execute(
            query(
                "UPDATE t_group_send_task SET status = 'CANCELLED', finished_at = ?, update_time = ? \
                 WHERE id = ? AND status IN ('PENDING', 'PROCESSING')",
            )
            .bind(now)
            .bind(now)
            .bind(task.id),
        )
        .await?
        .rows_affected;
    if n == 0 {
        return Err(ApiError::domain(
            StatusCode::CONFLICT,
            "TASK_STATE_CONFLICT",
            "task finished meanwhile",
        ));
    }
    let job = cancel_job(task.tenant_id, task.id).map_err(anyhow::Error::new)?;
    state
        .jobs
        .enqueue(&mut tx, job)
        .await
        .map_err(anyhow::Error::new)?;
    audit::record(
        &mut tx,
        user,
        "group_send.cancel",
        "group_send_task",
        task.id,
        json!({}),
    )
    .await?;
    tx.commit().await?;
    state
        .jobs
        .cancel(
            Scope::Tenant(task.tenant_id),
            &JobTarget::Group(group(task.id)),
        )
        .await
        .map_err(anyhow::Error::new)?;
    Ok(())
}

//! Seed 000's SOP routes: templates (create, update, delete, list), execute, executions,
//! execution control.

use std::collections::HashMap;

use axum::extract::State;
use axum::http::{Method, StatusCode};
use scrm_db::query;
use serde::Deserialize;
use serde_json::{Value, json};

use super::model::{TemplateBody, check};
use super::runner::control;
use super::store::{self, EXECUTION_COLUMNS, ExecutionRow, StepRow, TemplateRow};
use crate::audit;
use crate::auth::CurrentUser;
use crate::auth::permissions as perm;
use crate::http::envelope::{Paging, Reply, created, ok};
use crate::http::extract::{ApiJson, ApiPath, ApiQuery};
use crate::http::routes::{Access, Routes};
use crate::http::{ApiError, ApiResult};
use crate::state::{AppState, iso, iso_opt, now_ms};

/// The routes.
pub fn routes(state: &AppState) -> Routes {
    Routes::new(state, "operation")
        .route(
            Method::POST,
            "/api/sop/template",
            Access::Permission(perm::SOP_TEMPLATE_CREATE),
            "Create an SOP template",
            create_template,
        )
        .route(
            Method::PUT,
            "/api/sop/template/{id}",
            Access::Permission(perm::SOP_TEMPLATE_UPDATE),
            "Change an SOP template",
            update_template,
        )
        .route(
            Method::DELETE,
            "/api/sop/template/{id}",
            Access::Permission(perm::SOP_TEMPLATE_DELETE),
            "Delete an SOP template",
            delete_template,
        )
        .route(
            Method::GET,
            "/api/sop/templates",
            Access::Permission(perm::SOP_TEMPLATE_VIEW),
            "List SOP templates",
            list_templates,
        )
        .route(
            Method::POST,
            "/api/sop/execute",
            Access::Permission(perm::SOP_EXECUTE),
            "Start an SOP for targets",
            execute,
        )
        .route(
            Method::GET,
            "/api/sop/executions",
            Access::Permission(perm::SOP_EXECUTION_VIEW),
            "List SOP executions",
            list_executions,
        )
        .route(
            Method::POST,
            "/api/sop/execution/control",
            Access::Permission(perm::SOP_EXECUTION_CONTROL),
            "Pause, resume or cancel SOP executions",
            control_executions,
        )
}

fn template_view(t: &TemplateRow, steps: &[&StepRow]) -> Value {
    json!({
        "id": t.id,
        "templateId": t.id,
        "templateName": t.template_name,
        "templateType": t.template_type,
        "triggerType": t.trigger_type,
        "triggerConfig": t.trigger_config.as_deref().and_then(|c| serde_json::from_str::<Value>(c).ok()),
        "description": t.description,
        "status": t.status,
        "steps": steps.iter().map(|s| json!({
            "stepId": s.id,
            "stepOrder": s.step_order,
            "stepName": s.step_name,
            "stepType": s.step_type,
            "delayTime": s.delay_time,
            "delayUnit": s.delay_unit,
            "actionContent": serde_json::from_str::<Value>(&s.action_content).unwrap_or(Value::Null),
        })).collect::<Vec<_>>(),
        "createTime": iso(t.created_at),
        "updateTime": iso(t.updated_at),
    })
}

pub(crate) async fn view_of(state: &AppState, tenant_id: i64, id: i64) -> ApiResult<Value> {
    let t = store::get_template(&state.db, tenant_id, id)
        .await?
        .ok_or(ApiError::NotFound("SOP template"))?;
    let steps = store::steps_of(&state.db, tenant_id, &[id]).await?;
    Ok(template_view(&t, &steps.iter().collect::<Vec<_>>()))
}

async fn check_references(
    state: &AppState,
    tenant_id: i64,
    t: &super::model::Template,
) -> ApiResult<()> {
    for (i, s) in t.steps.iter().enumerate() {
        if s.step_type == 3 {
            let id = s
                .action_content
                .get("materialId")
                .and_then(Value::as_i64)
                .unwrap_or(0);
            if crate::operation::materials::get(&state.db, tenant_id, id)
                .await?
                .is_none()
            {
                return Err(ApiError::field(
                    format!("steps[{i}].actionContent.materialId"),
                    "no such material",
                ));
            }
        }
        if s.step_type == 2 {
            let tags: Vec<i64> = s
                .action_content
                .get("tagIds")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(Value::as_i64).collect())
                .unwrap_or_default();
            let mut tx = state.db.begin().await?;
            let unknown = crate::customers::tags::unknown_tags(&mut tx, tenant_id, &tags).await?;
            tx.rollback().await?;
            if !unknown.is_empty() {
                return Err(ApiError::field(
                    format!("steps[{i}].actionContent.tagIds"),
                    format!("unknown tags {unknown:?}"),
                ));
            }
        }
    }
    Ok(())
}

pub(crate) async fn create_template(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiJson(b): ApiJson<TemplateBody>,
) -> ApiResult<Reply<Value>> {
    let t = check(b)?;
    check_references(&state, user.tenant_id, &t).await?;
    let mut tx = state.db.begin().await?;
    let id = store::insert_template(&mut tx, user.tenant_id, user.id, &t, now_ms()).await?;
    audit::record(
        &mut tx,
        &user,
        "sop.template.create",
        "sop_template",
        id,
        json!({"templateName": t.name}),
    )
    .await?;
    tx.commit().await?;
    Ok(created(view_of(&state, user.tenant_id, id).await?))
}

pub(crate) async fn update_template(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiPath(id): ApiPath<i64>,
    ApiJson(b): ApiJson<TemplateBody>,
) -> ApiResult<Reply<Value>> {
    store::get_template(&state.db, user.tenant_id, id)
        .await?
        .ok_or(ApiError::NotFound("SOP template"))?;
    let t = check(b)?;
    check_references(&state, user.tenant_id, &t).await?;
    let mut tx = state.db.begin().await?;
    if !store::update_template(&mut tx, user.tenant_id, id, &t, now_ms()).await? {
        return Err(ApiError::NotFound("SOP template"));
    }
    audit::record(
        &mut tx,
        &user,
        "sop.template.update",
        "sop_template",
        id,
        json!({"templateName": t.name}),
    )
    .await?;
    tx.commit().await?;
    Ok(ok(view_of(&state, user.tenant_id, id).await?))
}

pub(crate) async fn delete_template(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Reply<Value>> {
    let mut tx = state.db.begin().await?;
    let n = tx
        .execute(query("UPDATE sop_template SET deleted = 1, updated_at = ? WHERE tenant_id = ? AND id = ? AND deleted = 0").bind(now_ms()).bind(user.tenant_id).bind(id))
        .await?
        .rows_affected;
    if n == 0 {
        return Err(ApiError::NotFound("SOP template"));
    }
    audit::record(
        &mut tx,
        &user,
        "sop.template.delete",
        "sop_template",
        id,
        json!({}),
    )
    .await?;
    tx.commit().await?;
    Ok(ok(json!({"templateId": id, "deleted": true})))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct PageQuery {
    page: Option<i64>,
    page_size: Option<i64>,
}

pub(crate) async fn list_templates(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> ApiResult<Reply<Value>> {
    let p = Paging::new(q.page, q.page_size, 20, 100)?;
    let (rows, total) =
        store::list_templates(&state.db, user.tenant_id, p.offset(), p.size).await?;
    let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
    let steps = store::steps_of(&state.db, user.tenant_id, &ids).await?;
    let mut by: HashMap<i64, Vec<&StepRow>> = HashMap::new();
    for s in &steps {
        by.entry(s.template_id).or_default().push(s);
    }
    let list: Vec<Value> = rows
        .iter()
        .map(|t| template_view(t, by.get(&t.id).map(Vec::as_slice).unwrap_or(&[])))
        .collect();
    Ok(ok(
        json!({"list": list, "total": total, "page": p.page, "pageSize": p.size}),
    ))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ExecuteBody {
    template_id: Option<i64>,
    target_type: Option<i64>,
    target_ids: Option<Vec<i64>>,
}

pub(crate) async fn execute(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiJson(b): ApiJson<ExecuteBody>,
) -> ApiResult<Reply<Value>> {
    let template_id = b
        .template_id
        .ok_or_else(|| ApiError::field("templateId", "is required"))?;
    let ids = b
        .target_ids
        .filter(|v| !v.is_empty())
        .ok_or_else(|| ApiError::field("targetIds", "is required"))?;
    if ids.len() > 10_000 || ids.iter().any(|i| *i <= 0) {
        return Err(ApiError::field("targetIds", "1 to 10,000 positive ids"));
    }
    let t = store::get_template(&state.db, user.tenant_id, template_id)
        .await?
        .ok_or(ApiError::NotFound("SOP template"))?;
    let target_type = b.target_type.unwrap_or(t.template_type);
    if target_type != t.template_type {
        return Err(ApiError::field(
            "targetType",
            "must match the template type (1 customers, 2 group chats)",
        ));
    }
    let table = if target_type == 2 {
        "group_chat"
    } else {
        "customer"
    };
    let mut q = query(format!(
        "SELECT COUNT(*) FROM {table} WHERE tenant_id = ? AND id IN "
    ))
    .bind(user.tenant_id);
    q.push_in_list(ids.iter().copied());
    let mut seen = std::collections::HashSet::new();
    let distinct = ids.iter().filter(|i| seen.insert(**i)).count() as i64;
    if state.db.fetch_i64(q).await? != distinct {
        return Err(ApiError::domain(
            StatusCode::NOT_FOUND,
            "TARGET_NOT_FOUND",
            "some targets do not exist",
        ));
    }
    let steps = store::steps_of(&state.db, user.tenant_id, &[t.id]).await?;
    let started = store::start_executions(
        &state.db,
        &state.jobs,
        &t,
        &steps,
        target_type,
        &ids,
        4,
        now_ms(),
    )
    .await?;
    let mut tx = state.db.begin().await?;
    audit::record(
        &mut tx,
        &user,
        "sop.execute",
        "sop_template",
        t.id,
        json!({"started": started.execution_ids.len(), "skipped": started.skipped_target_ids}),
    )
    .await?;
    tx.commit().await?;
    Ok(ok(serde_json::to_value(&started).unwrap_or_default()))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ExecQuery {
    template_id: Option<i64>,
    status: Option<i64>,
    page: Option<i64>,
    page_size: Option<i64>,
}

pub(crate) async fn list_executions(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiQuery(q): ApiQuery<ExecQuery>,
) -> ApiResult<Reply<Value>> {
    let p = Paging::new(q.page, q.page_size, 20, 100)?;
    let mut cond = query(" WHERE tenant_id = ?").bind(user.tenant_id);
    if let Some(t) = q.template_id {
        cond.push_sql(" AND template_id = ?").push_bind(t);
    }
    if let Some(s) = q.status {
        if !(0..=4).contains(&s) {
            return Err(ApiError::field("status", "must be 0-4"));
        }
        cond.push_sql(" AND status = ?").push_bind(s);
    }
    let mut count = query("SELECT COUNT(*) FROM sop_execution");
    count.append(&cond);
    let mut page = query(format!("SELECT {EXECUTION_COLUMNS} FROM sop_execution"));
    page.append(&cond);
    page.push_sql(" ORDER BY id DESC LIMIT ? OFFSET ?")
        .push_bind(p.size)
        .push_bind(p.offset());
    // Executions and their steps from one snapshot: a step's outcome and its execution's
    // progress move in one transaction, and separate reads could straddle it (an execution
    // shown finished beside its last step still waiting).
    let mut tx = state.db.begin_read().await?;
    let total = tx.fetch_i64(count).await?;
    let rows: Vec<ExecutionRow> = tx.fetch_all(page).await?;
    let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
    let step_rows = match store::exec_steps_query(user.tenant_id, &ids) {
        Some(q) => store::exec_steps_of(tx.fetch_all(q).await?),
        None => Vec::new(),
    };
    tx.commit().await?;
    let mut steps: HashMap<i64, Vec<Value>> = HashMap::new();
    for (e, s) in step_rows {
        steps.entry(e).or_default().push(json!({
            "stepOrder": s.step_order, "stepName": s.step_name, "stepType": s.step_type,
            "dueAt": iso(s.due_at), "status": s.status, "msgid": s.msgid,
            "result": s.result.as_deref().and_then(|r| serde_json::from_str::<Value>(r).ok()),
            "executedAt": iso_opt(s.executed_at),
        }));
    }
    let list: Vec<Value> = rows
        .iter()
        .map(|e| json!({
            "id": e.id, "executionId": e.id, "templateId": e.template_id, "targetType": e.target_type,
            "targetId": e.target_id, "triggerType": e.trigger_type, "status": e.status,
            "currentStep": e.current_step, "totalSteps": e.total_steps,
            "triggeredAt": iso(e.triggered_at), "pausedAt": iso_opt(e.paused_at), "finishedAt": iso_opt(e.finished_at),
            "steps": steps.remove(&e.id).unwrap_or_default(),
        }))
        .collect();
    Ok(ok(
        json!({"list": list, "total": total, "page": p.page, "pageSize": p.size}),
    ))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ControlBody {
    execution_ids: Option<Vec<i64>>,
    action: Option<String>,
}

pub(crate) async fn control_executions(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiJson(b): ApiJson<ControlBody>,
) -> ApiResult<Reply<Value>> {
    let ids = b
        .execution_ids
        .filter(|v| !v.is_empty())
        .ok_or_else(|| ApiError::field("executionIds", "is required"))?;
    if ids.len() > 1000 {
        return Err(ApiError::field("executionIds", "at most 1,000"));
    }
    let action = b.action.unwrap_or_default();
    if !["pause", "resume", "cancel"].contains(&action.as_str()) {
        return Err(ApiError::field("action", "must be pause, resume or cancel"));
    }
    let n = control(&state, user.tenant_id, &ids, &action).await?;
    let mut tx = state.db.begin().await?;
    audit::record(
        &mut tx,
        &user,
        &format!("sop.execution.{action}"),
        "sop_execution",
        ids.first().copied().unwrap_or(0),
        json!({"executionIds": ids, "affected": n}),
    )
    .await?;
    tx.commit().await?;
    Ok(ok(json!({"action": action, "affected": n})))
}

//! The workflow API under `/api/v1/automation/` (seed 002 names no paths for workflows).

use std::collections::HashMap;

use axum::extract::State;
use axum::http::{Method, StatusCode};
use scrm_db::{Tx, query};
use serde::Deserialize;
use serde_json::{Value, json};

use super::model::{self, Definition, Subject};
use super::store::{self, RunRow, RunStepRow, Start, VersionRow, WorkflowRow};
use super::{runner, status, step_status, templates, triggers};
use crate::audit;
use crate::auth::CurrentUser;
use crate::auth::permissions as perm;
use crate::http::envelope::{ListPage, Paging, Reply, created, ok};
use crate::http::error::FieldError;
use crate::http::extract::{ApiJson, ApiPath, ApiQuery};
use crate::http::routes::{Access, Routes};
use crate::http::{ApiError, ApiResult};
use crate::state::{AppState, iso, iso_opt, now_ms};

const BASE: &str = "/api/v1/automation/workflows";

/// The workflow routes.
pub fn routes(state: &AppState) -> Routes {
    let view = Access::Permission(perm::WORKFLOW_VIEW);
    let manage = Access::Permission(perm::WORKFLOW_MANAGE);
    let run = Access::Permission(perm::WORKFLOW_RUN);
    Routes::new(state, "automation")
        .route(Method::POST, BASE, manage, "Create a workflow (a draft, version 1) from a definition: name, trigger, steps", create_workflow)
        .route(Method::GET, BASE, view, "List workflows (page, size, status, keyword)", list_workflows)
        .route(Method::POST, "/api/v1/automation/workflows/import", manage, "Import a workflow from YAML ({yaml}; with workflowId: as that workflow's next version)", import_yaml)
        .route(Method::GET, "/api/v1/automation/workflows/{id}", view, "A workflow with its current definition and run counts", get_workflow)
        .route(Method::PUT, "/api/v1/automation/workflows/{id}", manage, "Change a workflow's definition (a published version is kept: the edit is a new version)", update_workflow)
        .route(Method::DELETE, "/api/v1/automation/workflows/{id}", manage, "Delete a workflow (its active runs are cancelled)", delete_workflow)
        .route(Method::POST, "/api/v1/automation/workflows/{id}/publish", manage, "Publish the current version: its trigger starts runs from now on", publish_workflow)
        .route(Method::POST, "/api/v1/automation/workflows/{id}/disable", manage, "Stop starting runs (running runs go on)", disable_workflow)
        .route(Method::GET, "/api/v1/automation/workflows/{id}/versions", view, "The versions of a workflow", list_versions)
        .route(Method::GET, "/api/v1/automation/workflows/{id}/versions/{version}", view, "One version with its definition", get_version)
        .route(Method::GET, "/api/v1/automation/workflows/{id}/export", view, "A version as YAML (version: default the current one)", export_yaml)
        .route(Method::POST, "/api/v1/automation/workflows/{id}/runs", run, "Start the published version for customers (manual trigger): {customerIds}", start_manual)
        .route(Method::GET, "/api/v1/automation/workflow-templates", view, "Seed 002's example workflows", list_templates)
        .route(Method::POST, "/api/v1/automation/workflow-templates/{key}", Access::Permission(perm::WORKFLOW_MANAGE), "Create a draft workflow from a template ({name, staffId, webhookUrl})", create_from_template)
        .route(Method::GET, "/api/v1/automation/workflow-runs", view, "Runs (page, size, workflowId, customerId, status 0-5)", list_runs)
        .route(Method::GET, "/api/v1/automation/workflow-runs/{id}", view, "A run with its step log", get_run)
        .route(Method::POST, "/api/v1/automation/workflow-runs/{id}/pause", run, "Pause a pending or running run", pause_run)
        .route(Method::POST, "/api/v1/automation/workflow-runs/{id}/resume", run, "Resume a paused run (a step that fell due meanwhile runs now)", resume_run)
        .route(Method::POST, "/api/v1/automation/workflow-runs/{id}/cancel", run, "Cancel a run", cancel_run)
}

fn invalid(errors: Vec<FieldError>) -> ApiError {
    let message = errors
        .iter()
        .map(|e| format!("{}: {}", e.field, e.message))
        .collect::<Vec<_>>()
        .join("; ");
    ApiError::Validation {
        message,
        fields: errors,
    }
}

fn not_found() -> ApiError {
    ApiError::NotFound("workflow")
}

/// Parse and check a definition, including what it refers to (tags, staff, stages, group
/// chats, materials of the tenant).
async fn checked(state: &AppState, tenant_id: i64, v: Value) -> ApiResult<Definition> {
    let d = model::parse(v).map_err(|e| invalid(vec![e]))?;
    let mut errors = model::check(&d);
    if errors.is_empty() {
        let mut tx = state.db.begin().await?;
        errors = references(state, &mut tx, tenant_id, &d).await?;
        tx.rollback().await?;
    }
    if errors.is_empty() {
        private_webhooks(state, &d)?;
        Ok(d)
    } else {
        Err(invalid(errors))
    }
}

/// A webhook step's URL whose host is a literal private address is refused (422
/// URL_NOT_ALLOWED, crate::outbound); a name is checked when the step calls it.
fn private_webhooks(state: &AppState, d: &Definition) -> ApiResult<()> {
    for (i, s) in d.steps.iter().enumerate() {
        if let (model::StepType::Webhook, Some(u)) = (&s.kind, s.url.as_deref()) {
            crate::outbound::check_stored(
                state.config.allow_private_urls,
                &format!("steps[{i}].url"),
                u,
            )?;
        }
    }
    Ok(())
}

async fn missing_tags(
    tx: &mut Tx,
    tenant_id: i64,
    field: String,
    ids: &[i64],
) -> ApiResult<Option<FieldError>> {
    if ids.is_empty() {
        return Ok(None);
    }
    let unknown = crate::customers::tags::unknown_tags(tx, tenant_id, ids).await?;
    Ok((!unknown.is_empty()).then(|| FieldError {
        field,
        message: format!("no such tags: {unknown:?}"),
    }))
}

async fn references(
    state: &AppState,
    tx: &mut Tx,
    tenant_id: i64,
    d: &Definition,
) -> ApiResult<Vec<FieldError>> {
    let mut out = Vec::new();
    if let Some(e) =
        missing_tags(tx, tenant_id, "trigger.tagIds".into(), &d.trigger.tag_ids).await?
    {
        out.push(e);
    }
    if !d.trigger.group_ids.is_empty() {
        let mut q =
            query("SELECT id FROM group_chat WHERE tenant_id = ? AND id IN ").bind(tenant_id);
        q.push_in_list(d.trigger.group_ids.iter().copied());
        let found: Vec<i64> = tx
            .fetch_all::<(i64,)>(q)
            .await?
            .into_iter()
            .map(|r| r.0)
            .collect();
        let missing: Vec<i64> = d
            .trigger
            .group_ids
            .iter()
            .copied()
            .filter(|g| !found.contains(g))
            .collect();
        if !missing.is_empty() {
            out.push(FieldError {
                field: "trigger.groupIds".into(),
                message: format!("no such group chats: {missing:?}"),
            });
        }
    }
    let stages: Vec<String> = crate::customers::followups::stages(&state.db, tenant_id)
        .await?
        .into_iter()
        .map(|s| s.code)
        .collect();
    if let Some(bad) = d.trigger.stages.iter().find(|x| !stages.contains(x)) {
        out.push(FieldError {
            field: "trigger.stages".into(),
            message: format!("`{bad}` is not a stage (one of {})", stages.join(", ")),
        });
    }
    for (i, s) in d.steps.iter().enumerate() {
        if let Some(e) =
            missing_tags(tx, tenant_id, format!("steps[{i}].tagIds"), &s.tag_ids).await?
        {
            out.push(e);
        }
        for (j, c) in s.when.iter().enumerate() {
            for (name, ids) in [("hasTags", &c.has_tags), ("lacksTags", &c.lacks_tags)] {
                if let Some(e) =
                    missing_tags(tx, tenant_id, format!("steps[{i}].when[{j}].{name}"), ids).await?
                {
                    out.push(e);
                }
            }
            if let Some(bad) = c.stage_in.iter().find(|x| !stages.contains(x)) {
                out.push(FieldError {
                    field: format!("steps[{i}].when[{j}].stageIn"),
                    message: format!("`{bad}` is not a stage (one of {})", stages.join(", ")),
                });
            }
        }
        if let Some(staff) = s.staff_id
            && !crate::customers::store::staff_exists(tx, tenant_id, staff).await?
        {
            out.push(FieldError {
                field: format!("steps[{i}].staffId"),
                message: format!("no staff member {staff}"),
            });
        }
        if let Some(pool) = s.pool_id
            && crate::automation::traffic::pool(&state.db, tenant_id, pool)
                .await?
                .is_none()
        {
            out.push(FieldError {
                field: format!("steps[{i}].poolId"),
                message: format!("no traffic pool {pool}"),
            });
        }
        if let Some(st) = &s.stage
            && !stages.contains(st)
        {
            out.push(FieldError {
                field: format!("steps[{i}].stage"),
                message: format!("`{st}` is not a stage (one of {})", stages.join(", ")),
            });
        }
        for m in &s.material_ids {
            if crate::operation::materials::get(&state.db, tenant_id, *m)
                .await?
                .is_none()
            {
                out.push(FieldError {
                    field: format!("steps[{i}].materialIds"),
                    message: format!("material {m} does not exist"),
                });
                break;
            }
        }
    }
    Ok(out)
}

/// Run counts per state of a workflow.
async fn run_counts(state: &AppState, tenant_id: i64, id: i64) -> ApiResult<Value> {
    let rows: Vec<(i64, i64)> = state
        .db
        .fetch_all(
            query("SELECT status, COUNT(*) FROM workflow_run WHERE tenant_id = ? AND workflow_id = ? GROUP BY status")
                .bind(tenant_id)
                .bind(id),
        )
        .await?;
    let mut m = serde_json::Map::new();
    for s in 0..=5 {
        m.insert(status::name(s).into(), json!(0));
    }
    for (s, n) in rows {
        m.insert(status::name(s).into(), json!(n));
    }
    Ok(Value::Object(m))
}

async fn published_number(state: &AppState, w: &WorkflowRow) -> ApiResult<Option<i64>> {
    Ok(match w.published_version_id {
        Some(v) => store::version_by_id(&state.db, v).await?.map(|v| v.version),
        None => None,
    })
}

fn summary(w: &WorkflowRow, published: Option<i64>) -> Value {
    json!({
        "id": w.id,
        "name": w.name,
        "description": w.description,
        "status": status::workflow::name(w.status),
        "triggerType": w.trigger_type,
        "currentVersion": w.current_version,
        "publishedVersion": published,
        "publishedAt": iso_opt(w.published_at),
        "createTime": iso(w.created_at),
        "updateTime": iso(w.updated_at),
    })
}

async fn detail(state: &AppState, tenant_id: i64, id: i64) -> ApiResult<Value> {
    let w = store::workflow(&state.db, tenant_id, id)
        .await?
        .ok_or_else(not_found)?;
    let v = store::version(&state.db, tenant_id, id, w.current_version)
        .await?
        .ok_or_else(not_found)?;
    let mut out = summary(&w, published_number(state, &w).await?);
    out["definition"] = serde_json::from_str(&v.definition).unwrap_or(Value::Null);
    out["runs"] = run_counts(state, tenant_id, id).await?;
    Ok(out)
}

/// Store a checked definition as a new workflow.
async fn insert(state: &AppState, user: &CurrentUser, d: &Definition, how: &str) -> ApiResult<i64> {
    let mut tx = state.db.begin().await?;
    let id = store::insert_workflow(&mut tx, user.tenant_id, Some(user.id), d, now_ms()).await?;
    audit::record(
        &mut tx,
        user,
        "workflow.create",
        "workflow",
        id,
        json!({"name": d.name, "from": how}),
    )
    .await?;
    tx.commit().await?;
    Ok(id)
}

async fn create_workflow(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiJson(body): ApiJson<Value>,
) -> ApiResult<Reply<Value>> {
    let d = checked(&state, user.tenant_id, body).await?;
    let id = insert(&state, &user, &d, "api").await?;
    Ok(created(detail(&state, user.tenant_id, id).await?))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ListQuery {
    page: Option<i64>,
    size: Option<i64>,
    status: Option<String>,
    keyword: Option<String>,
}

pub(crate) async fn list_workflows(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> ApiResult<Reply<ListPage<Value>>> {
    let paging = Paging::new(q.page, q.size, 20, 100)?;
    let mut cond = query(" WHERE tenant_id = ? AND deleted = 0").bind(user.tenant_id);
    if let Some(s) = q.status.filter(|s| !s.is_empty()) {
        let code = match s.as_str() {
            "draft" => status::workflow::DRAFT,
            "published" => status::workflow::PUBLISHED,
            "disabled" => status::workflow::DISABLED,
            _ => {
                return Err(ApiError::field(
                    "status",
                    "one of draft, published, disabled",
                ));
            }
        };
        cond.push_sql(" AND status = ?").push_bind(code);
    }
    if let Some(k) = q.keyword.filter(|s| !s.trim().is_empty()) {
        cond.push_sql(" AND name LIKE ?")
            .push_bind(format!("%{}%", k.trim()));
    }
    let (rows, total): (Vec<WorkflowRow>, i64) = paging
        .fetch(
            &state.db,
            "SELECT COUNT(*) FROM workflow",
            "SELECT id, tenant_id, name, description, status, trigger_type, current_version, published_version_id, published_at, created_at, updated_at FROM workflow",
            &cond,
            "id",
        )
        .await?;
    let mut list = Vec::with_capacity(rows.len());
    for w in rows {
        list.push(summary(&w, published_number(&state, &w).await?));
    }
    Ok(ok(ListPage {
        list,
        total,
        page: paging.page,
        size: paging.size,
    }))
}

pub(crate) async fn get_workflow(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Reply<Value>> {
    Ok(ok(detail(&state, user.tenant_id, id).await?))
}

/// Save `d` as the workflow's next (or current draft) version.
async fn save(state: &AppState, user: &CurrentUser, id: i64, d: &Definition) -> ApiResult<i64> {
    let mut tx = state.db.begin().await?;
    let w = store::workflow_tx(&mut tx, user.tenant_id, id)
        .await?
        .ok_or_else(not_found)?;
    let version = store::save_definition(&mut tx, &w, d, Some(user.id), now_ms()).await?;
    audit::record(
        &mut tx,
        user,
        "workflow.update",
        "workflow",
        id,
        json!({"version": version}),
    )
    .await?;
    tx.commit().await?;
    Ok(version)
}

async fn update_workflow(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiPath(id): ApiPath<i64>,
    ApiJson(body): ApiJson<Value>,
) -> ApiResult<Reply<Value>> {
    store::workflow(&state.db, user.tenant_id, id)
        .await?
        .ok_or_else(not_found)?;
    let d = checked(&state, user.tenant_id, body).await?;
    save(&state, &user, id, &d).await?;
    Ok(ok(detail(&state, user.tenant_id, id).await?))
}

/// Cancel the active runs of a workflow.
async fn cancel_active(state: &AppState, tenant_id: i64, id: i64) -> ApiResult<u64> {
    let runs: Vec<(i64,)> = state
        .db
        .fetch_all(
            query("SELECT id FROM workflow_run WHERE tenant_id = ? AND workflow_id = ? AND status IN (0, 1, 5)")
                .bind(tenant_id)
                .bind(id),
        )
        .await?;
    let mut n = 0;
    for (r,) in runs {
        if runner::control(state, tenant_id, r, "cancel").await? == Some(true) {
            n += 1;
        }
    }
    Ok(n)
}

pub(crate) async fn delete_workflow(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Reply<Value>> {
    let mut tx = state.db.begin().await?;
    let n = tx
        .execute(
            query("UPDATE workflow SET deleted = 1, status = ?, updated_at = ? WHERE tenant_id = ? AND id = ? AND deleted = 0")
                .bind(status::workflow::DISABLED)
                .bind(now_ms())
                .bind(user.tenant_id)
                .bind(id),
        )
        .await?
        .rows_affected;
    if n == 0 {
        return Err(not_found());
    }
    audit::record(&mut tx, &user, "workflow.delete", "workflow", id, json!({})).await?;
    tx.commit().await?;
    triggers::sync_schedule(&state, user.tenant_id, id, None).await?;
    let cancelled = cancel_active(&state, user.tenant_id, id).await?;
    Ok(ok(
        json!({"id": id, "deleted": true, "cancelledRuns": cancelled}),
    ))
}

pub(crate) async fn publish_workflow(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Reply<Value>> {
    let w = store::workflow(&state.db, user.tenant_id, id)
        .await?
        .ok_or_else(not_found)?;
    let current = store::version(&state.db, user.tenant_id, id, w.current_version)
        .await?
        .ok_or_else(not_found)?;
    // What it refers to may have gone since it was saved.
    let d = checked(
        &state,
        user.tenant_id,
        serde_json::from_str(&current.definition).map_err(anyhow::Error::new)?,
    )
    .await?;
    let mut tx = state.db.begin().await?;
    let w = store::workflow_tx(&mut tx, user.tenant_id, id)
        .await?
        .ok_or_else(not_found)?;
    let v = store::publish(&mut tx, &w, now_ms()).await?;
    audit::record(
        &mut tx,
        &user,
        "workflow.publish",
        "workflow",
        id,
        json!({"version": v.version}),
    )
    .await?;
    tx.commit().await?;
    let schedule = d.trigger.schedule_cron();
    triggers::sync_schedule(&state, user.tenant_id, id, schedule.map(|c| (v.id, c))).await?;
    Ok(ok(detail(&state, user.tenant_id, id).await?))
}

pub(crate) async fn disable_workflow(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Reply<Value>> {
    let mut tx = state.db.begin().await?;
    let w = store::workflow_tx(&mut tx, user.tenant_id, id)
        .await?
        .ok_or_else(not_found)?;
    if w.status != status::workflow::PUBLISHED {
        return Err(ApiError::domain(
            StatusCode::CONFLICT,
            "WORKFLOW_NOT_PUBLISHED",
            "only a published workflow can be disabled",
        ));
    }
    tx.execute(
        query("UPDATE workflow SET status = ?, updated_at = ? WHERE id = ?")
            .bind(status::workflow::DISABLED)
            .bind(now_ms())
            .bind(id),
    )
    .await?;
    audit::record(
        &mut tx,
        &user,
        "workflow.disable",
        "workflow",
        id,
        json!({}),
    )
    .await?;
    tx.commit().await?;
    triggers::sync_schedule(&state, user.tenant_id, id, None).await?;
    Ok(ok(detail(&state, user.tenant_id, id).await?))
}

fn version_view(w: &WorkflowRow, v: &VersionRow, with_definition: bool) -> Value {
    let mut out = json!({
        "version": v.version,
        "published": w.published_version_id == Some(v.id),
        "current": w.current_version == v.version,
        "publishedAt": iso_opt(v.published_at),
        "createTime": iso(v.created_at),
        "updateTime": iso(v.updated_at),
    });
    if with_definition {
        out["definition"] = serde_json::from_str(&v.definition).unwrap_or(Value::Null);
    }
    out
}

async fn list_versions(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Reply<Value>> {
    let w = store::workflow(&state.db, user.tenant_id, id)
        .await?
        .ok_or_else(not_found)?;
    let list: Vec<Value> = store::versions(&state.db, user.tenant_id, id)
        .await?
        .iter()
        .map(|v| version_view(&w, v, false))
        .collect();
    Ok(ok(json!({"list": list})))
}

async fn get_version(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiPath((id, version)): ApiPath<(i64, i64)>,
) -> ApiResult<Reply<Value>> {
    let w = store::workflow(&state.db, user.tenant_id, id)
        .await?
        .ok_or_else(not_found)?;
    let v = store::version(&state.db, user.tenant_id, id, version)
        .await?
        .ok_or(ApiError::NotFound("workflow version"))?;
    Ok(ok(version_view(&w, &v, true)))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct ExportQuery {
    version: Option<i64>,
}

pub(crate) async fn export_yaml(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiPath(id): ApiPath<i64>,
    ApiQuery(q): ApiQuery<ExportQuery>,
) -> ApiResult<Reply<Value>> {
    let w = store::workflow(&state.db, user.tenant_id, id)
        .await?
        .ok_or_else(not_found)?;
    let v = store::version(
        &state.db,
        user.tenant_id,
        id,
        q.version.unwrap_or(w.current_version),
    )
    .await?
    .ok_or(ApiError::NotFound("workflow version"))?;
    let d = v.definition().map_err(ApiError::Internal)?;
    let yaml = model::to_yaml(&d).map_err(ApiError::Internal)?;
    Ok(ok(
        json!({"id": id, "version": v.version, "format": "yaml", "yaml": yaml}),
    ))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct ImportBody {
    yaml: Option<String>,
    workflow_id: Option<i64>,
}

pub(crate) async fn import_yaml(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiJson(b): ApiJson<ImportBody>,
) -> ApiResult<Reply<Value>> {
    let text = b
        .yaml
        .filter(|y| !y.trim().is_empty())
        .ok_or_else(|| ApiError::field("yaml", "is required"))?;
    let parsed = model::from_yaml(&text).map_err(|e| invalid(vec![e]))?;
    let d = checked(
        &state,
        user.tenant_id,
        serde_json::to_value(&parsed).map_err(anyhow::Error::new)?,
    )
    .await?;
    let id = match b.workflow_id {
        Some(id) => {
            store::workflow(&state.db, user.tenant_id, id)
                .await?
                .ok_or_else(|| ApiError::field("workflowId", "no such workflow"))?;
            save(&state, &user, id, &d).await?;
            id
        }
        None => insert(&state, &user, &d, "yaml").await?,
    };
    Ok(created(detail(&state, user.tenant_id, id).await?))
}

async fn list_templates(State(_): State<AppState>, _user: CurrentUser) -> ApiResult<Reply<Value>> {
    let list: Vec<Value> = templates::all()
        .iter()
        .map(|t| {
            json!({
                "key": t.key,
                "name": t.name,
                "description": t.description,
                "definition": t.definition(&templates::Params::default()),
            })
        })
        .collect();
    Ok(ok(json!({"list": list})))
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
struct FromTemplate {
    name: Option<String>,
    staff_id: Option<i64>,
    webhook_url: Option<String>,
}

async fn create_from_template(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiPath(key): ApiPath<String>,
    ApiJson(b): ApiJson<FromTemplate>,
) -> ApiResult<Reply<Value>> {
    let t = templates::get(&key).ok_or(ApiError::NotFound("workflow template"))?;
    let mut def = t.definition(&templates::Params {
        staff_id: b.staff_id,
        webhook_url: b.webhook_url.filter(|u| !u.trim().is_empty()),
    });
    if let Some(n) = b.name.filter(|n| !n.trim().is_empty()) {
        def["name"] = json!(n);
    }
    // Tags by name: the tenant's, or created (and pushed to WeCom) in one group for workflows.
    let names = templates::tag_names(&def);
    let mut ids: HashMap<String, i64> = HashMap::new();
    let mut tx = state.db.begin().await?;
    let now = now_ms();
    for n in &names {
        let found: Option<(i64,)> = tx
            .fetch_optional(
                query(
                    "SELECT MIN(id) FROM tag WHERE tenant_id = ? AND name = ? HAVING COUNT(*) > 0",
                )
                .bind(user.tenant_id)
                .bind(n),
            )
            .await?;
        let id = match found {
            Some((id,)) => id,
            None => {
                let group: Option<(i64,)> = tx
                    .fetch_optional(
                        query("SELECT id FROM tag_group WHERE tenant_id = ? AND name = ?")
                            .bind(user.tenant_id)
                            .bind("自动化工作流"),
                    )
                    .await?;
                let group = match group {
                    Some((g,)) => g,
                    None => {
                        crate::customers::tags::create_group(
                            &mut tx,
                            user.tenant_id,
                            "自动化工作流",
                            None,
                            None,
                            now,
                        )
                        .await?
                    }
                };
                let id = crate::customers::tags::create_tag(
                    &mut tx,
                    user.tenant_id,
                    group,
                    n,
                    None,
                    None,
                    now,
                )
                .await?;
                crate::customers::push::Pushes::new(&state.jobs, &mut tx, user.tenant_id)
                    .await?
                    .tag_saved(&mut tx, id, "create")
                    .await?;
                id
            }
        };
        ids.insert(n.clone(), id);
    }
    templates::resolve_tags(&mut def, &|n| ids.get(n).copied());
    let d = model::parse(def).map_err(|e| invalid(vec![e]))?;
    let mut errors = model::check(&d);
    if errors.is_empty() {
        errors = references(&state, &mut tx, user.tenant_id, &d).await?;
    }
    if !errors.is_empty() {
        tx.rollback().await?;
        return Err(invalid(errors));
    }
    private_webhooks(&state, &d)?;
    let id = store::insert_workflow(&mut tx, user.tenant_id, Some(user.id), &d, now).await?;
    audit::record(
        &mut tx,
        &user,
        "workflow.create",
        "workflow",
        id,
        json!({"name": d.name, "from": format!("template:{key}")}),
    )
    .await?;
    tx.commit().await?;
    Ok(created(detail(&state, user.tenant_id, id).await?))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct ManualBody {
    customer_ids: Option<Vec<i64>>,
}

pub(crate) async fn start_manual(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiPath(id): ApiPath<i64>,
    ApiJson(b): ApiJson<ManualBody>,
) -> ApiResult<Reply<Value>> {
    let ids = b.customer_ids.unwrap_or_default();
    if ids.is_empty() || ids.len() > 1000 {
        return Err(ApiError::field("customerIds", "1 to 1000 customer ids"));
    }
    let w = store::workflow(&state.db, user.tenant_id, id)
        .await?
        .ok_or_else(not_found)?;
    let (Some(vid), status::workflow::PUBLISHED) = (w.published_version_id, w.status) else {
        return Err(ApiError::domain(
            StatusCode::CONFLICT,
            "WORKFLOW_NOT_PUBLISHED",
            "publish the workflow before starting runs",
        ));
    };
    let v = store::version_by_id(&state.db, vid)
        .await?
        .ok_or_else(not_found)?;
    let d = v.definition().map_err(ApiError::Internal)?;
    if d.trigger.subject() != Subject::Customer {
        return Err(ApiError::field(
            "customerIds",
            "this workflow runs per group chat",
        ));
    }
    let mut tx = state.db.begin().await?;
    let existing = crate::customers::store::existing_ids(&mut tx, user.tenant_id, &ids).await?;
    tx.rollback().await?;
    let missing: Vec<i64> = ids
        .iter()
        .copied()
        .filter(|i| !existing.contains(i))
        .collect();
    if !missing.is_empty() {
        return Err(ApiError::field(
            "customerIds",
            format!("no such customers: {missing:?}"),
        ));
    }
    let started = store::start_runs(
        &state.db,
        &state.jobs,
        &Start {
            version: &v,
            definition: &d,
            trigger_type: model::TriggerType::Manual.as_str(),
            trigger_ref: Some(format!("user:{}", user.id)),
            occasion: None,
            at: now_ms(),
        },
        &ids,
    )
    .await?;
    Ok(created(
        json!({"runIds": started.run_ids, "skippedCustomerIds": started.skipped_ids, "version": v.version}),
    ))
}

fn step_view(s: &RunStepRow) -> Value {
    json!({
        "index": s.step_index,
        "key": s.step_key,
        "type": s.step_type,
        "status": s.status,
        "statusName": step_status::name(s.status),
        "dueAt": iso(s.due_at),
        "result": s.result.as_deref().and_then(|r| serde_json::from_str::<Value>(r).ok()),
        "error": s.error,
        "finishedAt": iso_opt(s.finished_at),
    })
}

fn run_view(r: &RunRow, steps: Option<Vec<Value>>) -> Value {
    let mut out = json!({
        "id": r.id,
        "workflowId": r.workflow_id,
        "version": r.version,
        "subjectType": if r.subject_type == 2 { "group" } else { "customer" },
        "subjectId": r.subject_id,
        "customerId": (r.subject_type == 1).then_some(r.subject_id),
        "groupId": (r.subject_type == 2).then_some(r.subject_id),
        "triggerType": r.trigger_type,
        "triggerRef": r.trigger_ref,
        "status": r.status,
        "statusName": status::name(r.status),
        "statusText": status::label_zh(r.status),
        "currentStep": r.current_step,
        "nextStepAt": iso_opt(r.next_step_at),
        "pausedAt": iso_opt(r.paused_at),
        "error": r.error,
        "startedAt": iso_opt(r.started_at),
        "finishedAt": iso_opt(r.finished_at),
        "createTime": iso(r.created_at),
        "updateTime": iso(r.updated_at),
    });
    if let Some(s) = steps {
        out["steps"] = json!(s);
    }
    out
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RunsQuery {
    page: Option<i64>,
    size: Option<i64>,
    workflow_id: Option<i64>,
    customer_id: Option<i64>,
    status: Option<i64>,
}

pub(crate) async fn list_runs(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiQuery(q): ApiQuery<RunsQuery>,
) -> ApiResult<Reply<ListPage<Value>>> {
    let paging = Paging::new(q.page, q.size, 20, 100)?;
    let mut cond = query(" WHERE tenant_id = ?").bind(user.tenant_id);
    if let Some(w) = q.workflow_id {
        cond.push_sql(" AND workflow_id = ?").push_bind(w);
    }
    if let Some(c) = q.customer_id {
        cond.push_sql(" AND subject_type = 1 AND subject_id = ?")
            .push_bind(c);
    }
    if let Some(s) = q.status {
        if !(0..=5).contains(&s) {
            return Err(ApiError::field("status", "0 to 5"));
        }
        cond.push_sql(" AND status = ?").push_bind(s);
    }
    let (rows, total): (Vec<RunRow>, i64) = paging
        .fetch(
            &state.db,
            "SELECT COUNT(*) FROM workflow_run",
            format!("SELECT {} FROM workflow_run", store::RUN_COLUMNS),
            &cond,
            "id",
        )
        .await?;
    Ok(ok(ListPage {
        list: rows.iter().map(|r| run_view(r, None)).collect(),
        total,
        page: paging.page,
        size: paging.size,
    }))
}

async fn one_run(state: &AppState, tenant_id: i64, id: i64) -> ApiResult<Value> {
    // The run and its steps from one snapshot: a step's log and the run's status move in one
    // transaction, and two plain reads could straddle it (a run already done beside its last
    // step still waiting).
    let mut tx = state.db.begin_read().await?;
    let steps: Vec<store::RunStepRow> = tx
        .fetch_all(store::run_steps_query(tenant_id, &[id]))
        .await?;
    let r: Option<store::RunRow> = tx.fetch_optional(store::run_query(id)).await?;
    tx.commit().await?;
    let r = r
        .filter(|r| r.tenant_id == tenant_id)
        .ok_or(ApiError::NotFound("workflow run"))?;
    let steps = steps.iter().map(step_view).collect();
    Ok(run_view(&r, Some(steps)))
}

pub(crate) async fn get_run(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Reply<Value>> {
    Ok(ok(one_run(&state, user.tenant_id, id).await?))
}

async fn control(
    state: AppState,
    user: CurrentUser,
    id: i64,
    action: &str,
) -> ApiResult<Reply<Value>> {
    let r = store::run(&state.db, id)
        .await?
        .filter(|r| r.tenant_id == user.tenant_id)
        .ok_or(ApiError::NotFound("workflow run"))?;
    if !runner::allowed(action, r.status) {
        return Err(ApiError::domain(
            StatusCode::CONFLICT,
            "WORKFLOW_RUN_STATE",
            format!(
                "a {} run cannot be {}",
                status::name(r.status),
                match action {
                    "pause" => "paused",
                    "resume" => "resumed",
                    _ => "cancelled",
                }
            ),
        ));
    }
    runner::control(&state, user.tenant_id, id, action).await?;
    let mut tx = state.db.begin().await?;
    audit::record(
        &mut tx,
        &user,
        &format!("workflow.run.{action}"),
        "workflow_run",
        id,
        json!({}),
    )
    .await?;
    tx.commit().await?;
    Ok(ok(one_run(&state, user.tenant_id, id).await?))
}

pub(crate) async fn pause_run(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Reply<Value>> {
    control(state, user, id, "pause").await
}

pub(crate) async fn resume_run(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Reply<Value>> {
    control(state, user, id, "resume").await
}

pub(crate) async fn cancel_run(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Reply<Value>> {
    control(state, user, id, "cancel").await
}

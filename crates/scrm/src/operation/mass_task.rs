//! Seed 000's mass tasks (群发任务): create, execute (now or at the scheduled time), cancel, list
//! by status 0-4. Task types: 1 message, 2 tag, 3 assign. Target types: 1 customer ids, 2 tag
//! ids, 3 group chat ids. Message types: 1 text (`messageContent` a string), 2 material
//! (`messageContent` the material id); an object `messageContent` is seed 004's content shape.

use axum::extract::State;
use axum::http::Method;
use scrm_db::query;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::auth::CurrentUser;
use crate::auth::permissions as perm;
use crate::http::envelope::{ListPage, Paging, Reply, ok};
use crate::http::extract::{ApiJson, ApiPath, ApiQuery};
use crate::http::routes::{Access, Routes};
use crate::http::{ApiError, ApiResult};
use crate::operation::content::{self, MessageContent};
use crate::operation::mass::status;
use crate::operation::mass::store::{self, NewTask, TASK_COLUMNS, Target, TaskRow};
use crate::operation::tasks;
use crate::state::{AppState, iso, iso_opt};

/// The routes.
pub fn routes(state: &AppState) -> Routes {
    Routes::new(state, "operation")
        .route(
            Method::POST,
            "/api/mass-task",
            Access::Permission(perm::MASS_TASK_CREATE),
            "Create a mass task (message, tag or assign)",
            create_task,
        )
        .route(
            Method::POST,
            "/api/mass-task/execute",
            Access::Permission(perm::MASS_TASK_EXECUTE),
            "Execute a mass task now or at its scheduled time",
            execute_task,
        )
        .route(
            Method::POST,
            "/api/mass-task/{id}/cancel",
            Access::Permission(perm::MASS_TASK_CANCEL),
            "Cancel a mass task",
            cancel_task,
        )
        .route(
            Method::GET,
            "/api/mass-task/list",
            Access::Permission(perm::MASS_TASK_VIEW),
            "List mass tasks (status 0-4)",
            list_tasks,
        )
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct CreateBody {
    task_name: Option<String>,
    task_type: Option<i64>,
    target_type: Option<i64>,
    target_ids: Option<Vec<i64>>,
    message_content: Option<Value>,
    message_type: Option<i64>,
    scheduled_time: Option<String>,
    /// Tag tasks: the tags to add.
    tag_ids: Option<Vec<i64>>,
    /// Assign tasks: the staff member who takes the customers over.
    staff_id: Option<i64>,
}

fn message(b: &CreateBody) -> ApiResult<MessageContent> {
    let v = b
        .message_content
        .as_ref()
        .ok_or_else(|| ApiError::field("messageContent", "is required for message tasks"))?;
    match (v, b.message_type.unwrap_or(1)) {
        (Value::Object(_), _) => content::parse(v),
        (Value::String(s), 1) if !s.trim().is_empty() => MessageContent::text(s),
        (v, 2) => {
            let id = v
                .as_i64()
                .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
                .ok_or_else(|| ApiError::field("messageContent", "must be a material id"))?;
            content::parse(&json!({"type": "MATERIAL", "data": {"materialId": id}}))
        }
        (_, 1) => Err(ApiError::field("messageContent", "must be non-empty text")),
        _ => Err(ApiError::field(
            "messageType",
            "must be 1 (text) or 2 (material)",
        )),
    }
}

async fn create_task(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiJson(b): ApiJson<CreateBody>,
) -> ApiResult<Reply<Value>> {
    let name = b
        .task_name
        .clone()
        .filter(|s| !s.trim().is_empty())
        .ok_or_else(|| ApiError::field("taskName", "is required"))?;
    if name.chars().count() > 100 {
        return Err(ApiError::field("taskName", "at most 100 characters"));
    }
    let task_type = b.task_type.unwrap_or(1);
    if !(1..=3).contains(&task_type) {
        return Err(ApiError::field("taskType", "must be 1, 2 or 3"));
    }
    let ids = b
        .target_ids
        .clone()
        .filter(|v| !v.is_empty())
        .ok_or_else(|| ApiError::field("targetIds", "is required"))?;
    let target = match b.target_type {
        Some(1) => Target {
            customer_ids: ids,
            ..Default::default()
        },
        Some(2) => Target {
            tag_ids: ids,
            ..Default::default()
        },
        Some(3) => Target {
            group_ids: ids,
            ..Default::default()
        },
        _ => {
            return Err(ApiError::field(
                "targetType",
                "must be 1 (customers), 2 (tags) or 3 (group chats)",
            ));
        }
    };
    let (content, action) = match task_type {
        1 => (Some(message(&b)?.json().clone()), None),
        2 => {
            let tags = b
                .tag_ids
                .clone()
                .filter(|v| !v.is_empty())
                .ok_or_else(|| ApiError::field("tagIds", "is required for tag tasks"))?;
            let mut tx = state.db.begin().await?;
            let unknown =
                crate::customers::tags::unknown_tags(&mut tx, user.tenant_id, &tags).await?;
            tx.rollback().await?;
            if !unknown.is_empty() {
                return Err(ApiError::field(
                    "tagIds",
                    format!("unknown tags {unknown:?}"),
                ));
            }
            (None, Some(json!({"tagIds": tags})))
        }
        _ => {
            let staff = b
                .staff_id
                .ok_or_else(|| ApiError::field("staffId", "is required for assign tasks"))?;
            let found = state
                .db
                .fetch_i64(
                    query("SELECT COUNT(*) FROM staff WHERE tenant_id = ? AND id = ?")
                        .bind(user.tenant_id)
                        .bind(staff),
                )
                .await?;
            if found == 0 {
                return Err(ApiError::field("staffId", "no such staff member"));
            }
            (None, Some(json!({"staffId": staff})))
        }
    };
    let scheduled = b
        .scheduled_time
        .as_deref()
        .filter(|s| !s.is_empty())
        .map(|s| tasks::parse_time("scheduledTime", s))
        .transpose()?;
    tasks::check_target(&state, user.tenant_id, &target).await?;
    let task = NewTask {
        source: "mass_task",
        task_type,
        sender: None,
        senders: None,
        task_name: Some(name),
        target,
        message_type: b.message_type.or(Some(1)).filter(|_| task_type == 1),
        message_content: content,
        action,
        scheduled_time: scheduled,
    };
    let row = tasks::create(&state, &user, task, None).await?;
    Ok(ok(view(&row)))
}

/// A task as seed 000 shows it.
fn view(t: &TaskRow) -> Value {
    let target: Value = serde_json::from_str(&t.target_ids).unwrap_or(Value::Null);
    let content: Value =
        serde_json::from_str(t.message_content.as_deref().unwrap_or("null")).unwrap_or(Value::Null);
    json!({
        "id": t.id,
        "taskId": t.id,
        "taskName": t.task_name,
        "taskType": t.task_type,
        "targetType": t.target_type,
        "target": target,
        "messageType": t.message_type,
        "messageContent": content,
        "action": t.action.as_deref().and_then(|a| serde_json::from_str::<Value>(a).ok()),
        "status": status::code(&t.status),
        "statusName": t.status,
        "targetCount": t.target_count,
        "successCount": t.success_count,
        "failedCount": t.failed_count,
        "scheduledTime": iso_opt(t.scheduled_time),
        "startedAt": iso_opt(t.started_at),
        "finishedAt": iso_opt(t.finished_at),
        "createTime": iso(t.create_time),
        "updateTime": iso(t.update_time),
    })
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ExecuteBody {
    task_id: Option<i64>,
    immediate: Option<bool>,
}

async fn execute_task(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiJson(b): ApiJson<ExecuteBody>,
) -> ApiResult<Reply<Value>> {
    let id = b
        .task_id
        .ok_or_else(|| ApiError::field("taskId", "is required"))?;
    let task = store::get_task(&state.db, user.tenant_id, id)
        .await?
        .ok_or(ApiError::NotFound("mass task"))?;
    tasks::execute(&state, &user, &task, b.immediate.unwrap_or(true)).await?;
    let task = store::get_task(&state.db, user.tenant_id, id)
        .await?
        .ok_or(ApiError::NotFound("mass task"))?;
    Ok(ok(view(&task)))
}

async fn cancel_task(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Reply<Value>> {
    let task = store::get_task(&state.db, user.tenant_id, id)
        .await?
        .ok_or(ApiError::NotFound("mass task"))?;
    tasks::cancel(&state, &user, &task).await?;
    let task = store::get_task(&state.db, user.tenant_id, id)
        .await?
        .ok_or(ApiError::NotFound("mass task"))?;
    Ok(ok(view(&task)))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ListQuery {
    status: Option<i64>,
    page: Option<i64>,
    page_size: Option<i64>,
    size: Option<i64>,
}

async fn list_tasks(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> ApiResult<Reply<ListPage<Value>>> {
    let paging = Paging::new(q.page, q.page_size.or(q.size), 20, 100)?;
    let mut cond = query(" WHERE tenant_id = ?").bind(user.tenant_id);
    if let Some(code) = q.status {
        let statuses =
            status::from_code(code).ok_or_else(|| ApiError::field("status", "must be 0-4"))?;
        cond.push_sql(" AND status IN ");
        cond.push_in_list(statuses.iter().map(|s| s.to_string()));
    }
    let mut count = query("SELECT COUNT(*) FROM t_group_send_task");
    count.append(&cond);
    let total = state.db.fetch_i64(count).await?;
    let mut page = query(format!("SELECT {TASK_COLUMNS} FROM t_group_send_task"));
    page.append(&cond);
    page.push_sql(" ORDER BY id DESC LIMIT ? OFFSET ?")
        .push_bind(paging.size)
        .push_bind(paging.offset());
    let rows: Vec<TaskRow> = state.db.fetch_all(page).await?;
    Ok(ok(ListPage {
        list: rows.iter().map(view).collect(),
        total,
        page: paging.page,
        size: paging.size,
    }))
}

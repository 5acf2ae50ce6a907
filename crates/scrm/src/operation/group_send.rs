//! Seed 004's group-send assistant (群发助手), exactly as documented: sender accounts, create a
//! task (201), list tasks (`{records,total,size,current,pages}`), a task with per-customer
//! results; and seed 002's immediate mass send on the same engine.

use axum::extract::State;
use axum::http::Method;
use scrm_db::query;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::auth::CurrentUser;
use crate::auth::permissions as perm;
use crate::http::envelope::{Paging, RecordsPage, Reply, created, ok};
use crate::http::extract::{ApiJson, ApiPath, ApiQuery};
use crate::http::routes::{Access, Routes};
use crate::http::{ApiError, ApiResult};
use crate::operation::content;
use crate::operation::mass::store::{self, NewTask, Target, TaskRow};
use crate::operation::mass::{result, status};
use crate::operation::tasks;
use crate::state::{AppState, iso, iso_opt, now_ms};

/// The routes.
pub fn routes(state: &AppState) -> Routes {
    Routes::new(state, "operation")
        .route(
            Method::GET,
            "/api/v1/workbench/wechat/group-send/accounts",
            Access::Permission(perm::GROUP_SEND_ACCOUNTS_VIEW),
            "WeCom accounts (staff) that can send group messages",
            accounts,
        )
        .route(
            Method::POST,
            "/api/v1/workbench/group-send/tasks",
            Access::Permission(perm::GROUP_SEND_CREATE),
            "Create a group-send task",
            create_task,
        )
        .route(
            Method::GET,
            "/api/v1/workbench/group-send/tasks",
            Access::Permission(perm::GROUP_SEND_TASKS_VIEW),
            "List group-send tasks",
            list_tasks,
        )
        .route(
            Method::GET,
            "/api/v1/workbench/group-send/tasks/{taskId}",
            Access::Permission(perm::GROUP_SEND_TASK_VIEW),
            "A group-send task with per-customer results",
            task_detail,
        )
        .route(
            Method::POST,
            "/v1/workbench/mass-send",
            Access::Permission(perm::WORKBENCH_MASS_SEND_CREATE),
            "Start a mass send now (seed 002)",
            mass_send,
        )
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Account {
    account_id: String,
    account_name: String,
    account_type: &'static str,
    status: &'static str,
}

pub(crate) async fn accounts(
    State(state): State<AppState>,
    user: CurrentUser,
) -> ApiResult<Reply<Vec<Account>>> {
    let rows: Vec<(String, String, i64)> = state
        .db
        .fetch_all(
            query("SELECT userid, name, status FROM staff WHERE tenant_id = ? ORDER BY id")
                .bind(user.tenant_id),
        )
        .await?;
    let mut out: Vec<Account> = rows
        .into_iter()
        .map(|(userid, name, st)| Account {
            account_id: userid,
            account_name: name,
            account_type: "WEWORK",
            // WeCom member status: 1 active, 5 left the company; 2 disabled / 4 not activated.
            status: match st {
                1 => "ACTIVE",
                5 => "EXPIRED",
                _ => "OFFLINE",
            },
        })
        .collect();
    // Personal WeChat accounts on device gateways send too (seed 004's "personal WeChat SDK").
    let devices: Vec<(String, String, String)> = state
        .db
        .fetch_all(
            query(
                "SELECT wxid, nickname, status FROM device_account WHERE tenant_id = ? ORDER BY id",
            )
            .bind(user.tenant_id),
        )
        .await?;
    out.extend(devices.into_iter().map(|(wxid, name, st)| Account {
        account_id: wxid,
        account_name: name,
        account_type: "WECHAT",
        status: match st.as_str() {
            "ACTIVE" => "ACTIVE",
            "EXPIRED" => "EXPIRED",
            _ => "OFFLINE",
        },
    }));
    Ok(ok(out))
}

/// The create body (seed 004 §2.4).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateBody {
    sender_account_id: Option<String>,
    /// More sender accounts (WeCom members and device accounts): each customer is sent to by
    /// the one that reaches it (`devices::group_send`).
    sender_account_ids: Option<Vec<String>>,
    target: Option<Target>,
    message_content: Option<Value>,
    scheduled_time: Option<String>,
    task_name: Option<String>,
}

async fn checked_task(
    state: &AppState,
    user: &CurrentUser,
    b: CreateBody,
    sender_required: bool,
    source: &'static str,
) -> ApiResult<(NewTask, i64)> {
    // (account id, request field) of every sender named, first the seed's senderAccountId.
    let mut named: Vec<(String, String)> = Vec::new();
    if let Some(s) = b.sender_account_id.filter(|s| !s.is_empty()) {
        named.push((s, "senderAccountId".into()));
    }
    let many = b.sender_account_ids.is_some();
    for (i, s) in b
        .sender_account_ids
        .unwrap_or_default()
        .into_iter()
        .enumerate()
    {
        if s.trim().is_empty() || s.len() > 100 {
            return Err(ApiError::field(
                format!("senderAccountIds[{i}]"),
                "1-100 characters",
            ));
        }
        if !named.iter().any(|(n, _)| *n == s) {
            named.push((s, format!("senderAccountIds[{i}]")));
        }
    }
    if named.len() > crate::devices::group_send::MAX_SENDERS {
        return Err(ApiError::field(
            "senderAccountIds",
            format!(
                "at most {} sender accounts",
                crate::devices::group_send::MAX_SENDERS
            ),
        ));
    }
    if sender_required && named.is_empty() {
        return Err(ApiError::field("senderAccountId", "is required"));
    }
    let sender = named.first().map(|(s, _)| s.clone());
    let target = b
        .target
        .ok_or_else(|| ApiError::field("target", "is required"))?;
    let content = content::parse(
        b.message_content
            .as_ref()
            .ok_or_else(|| ApiError::field("messageContent", "is required"))?,
    )?;
    if let Some(name) = &b.task_name
        && name.chars().count() > 100
    {
        return Err(ApiError::field("taskName", "at most 100 characters"));
    }
    let scheduled = b
        .scheduled_time
        .as_deref()
        .filter(|s| !s.is_empty())
        .map(|s| tasks::parse_time("scheduledTime", s))
        .transpose()?;
    let accounts =
        crate::devices::group_send::check_senders(state, user.tenant_id, &named, content.json())
            .await?;
    // One WeCom member named the seed's way keeps the one-sender engine path.
    let senders = (many
        || accounts
            .iter()
            .any(|a| a.provider == crate::devices::provider::Provider::Device))
    .then(|| named.iter().map(|(s, _)| s.clone()).collect::<Vec<_>>());
    tasks::check_target(state, user.tenant_id, &target).await?;
    let start = scheduled.unwrap_or_else(now_ms).max(now_ms());
    Ok((
        NewTask {
            source,
            task_type: 1,
            sender,
            senders,
            task_name: b.task_name,
            target,
            message_type: None,
            message_content: Some(content.json().clone()),
            action: None,
            scheduled_time: scheduled,
        },
        start,
    ))
}

fn created_view(t: &TaskRow) -> Value {
    json!({
        "groupSendTaskId": t.id,
        "taskName": t.task_name,
        "status": t.status,
        "scheduledTime": iso_opt(t.scheduled_time),
        "createTime": iso(t.create_time),
    })
}

pub(crate) async fn create_task(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiJson(b): ApiJson<CreateBody>,
) -> ApiResult<Reply<Value>> {
    let (task, start) = checked_task(&state, &user, b, true, "group_send").await?;
    let row = tasks::create(&state, &user, task, Some(start)).await?;
    Ok(created(created_view(&row)))
}

async fn mass_send(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiJson(b): ApiJson<CreateBody>,
) -> ApiResult<Reply<Value>> {
    let (mut task, _) = checked_task(&state, &user, b, false, "mass_send").await?;
    task.scheduled_time = None;
    let row = tasks::create(&state, &user, task, Some(now_ms())).await?;
    Ok(created(created_view(&row)))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ListQuery {
    status: Option<String>,
    task_name: Option<String>,
    start_time: Option<String>,
    end_time: Option<String>,
    page: Option<i64>,
    size: Option<i64>,
}

pub(crate) async fn list_tasks(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> ApiResult<Reply<RecordsPage<Value>>> {
    let paging = Paging::new(q.page, q.size, 10, 100)?;
    let mut cond = query(" WHERE t.tenant_id = ? AND t.source IN ('group_send', 'mass_send')")
        .bind(user.tenant_id);
    if let Some(s) = q.status.filter(|s| !s.is_empty()) {
        if !status::ALL.contains(&s.as_str()) {
            return Err(ApiError::field(
                "status",
                "must be PENDING, PROCESSING, COMPLETED, PARTIAL_SUCCESS, FAILED or CANCELLED",
            ));
        }
        cond.push_sql(" AND t.status = ?").push_bind(s);
    }
    if let Some(n) = q.task_name.filter(|s| !s.is_empty()) {
        cond.push_sql(" AND t.task_name LIKE ?")
            .push_bind(format!("%{n}%"));
    }
    if let Some(s) = q.start_time.filter(|s| !s.is_empty()) {
        cond.push_sql(" AND t.create_time >= ?")
            .push_bind(tasks::parse_time("startTime", &s)?);
    }
    if let Some(s) = q.end_time.filter(|s| !s.is_empty()) {
        cond.push_sql(" AND t.create_time <= ?")
            .push_bind(tasks::parse_time("endTime", &s)?);
    }
    let mut count = query("SELECT COUNT(*) FROM t_group_send_task t");
    count.append(&cond);
    let total = state.db.fetch_i64(count).await?;
    #[derive(sqlx::FromRow)]
    struct Row {
        id: i64,
        task_name: Option<String>,
        sender_name: Option<String>,
        target_count: i64,
        success_count: i64,
        status: String,
        scheduled_time: Option<i64>,
        create_time: i64,
    }
    let mut page = query(
        "SELECT t.id, t.task_name, COALESCE(s.name, d.nickname) AS sender_name, t.target_count, t.success_count, t.status, \
         t.scheduled_time, t.create_time FROM t_group_send_task t \
         LEFT JOIN staff s ON s.tenant_id = t.tenant_id AND s.userid = t.sender_account_id \
         LEFT JOIN device_account d ON d.tenant_id = t.tenant_id AND d.wxid = t.sender_account_id",
    );
    page.append(&cond);
    page.push_sql(" ORDER BY t.id DESC LIMIT ? OFFSET ?")
        .push_bind(paging.size)
        .push_bind(paging.offset());
    let rows: Vec<Row> = state.db.fetch_all(page).await?;
    let records = rows
        .into_iter()
        .map(|r| {
            json!({
                "groupSendTaskId": r.id,
                "taskName": r.task_name,
                "senderAccountName": r.sender_name,
                "targetCount": r.target_count,
                "successCount": r.success_count,
                "status": r.status,
                "scheduledTime": iso_opt(r.scheduled_time),
                "createTime": iso(r.create_time),
            })
        })
        .collect();
    Ok(ok(RecordsPage::new(
        records,
        total,
        paging.page,
        paging.size,
    )))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct DetailQuery {
    result_page: Option<i64>,
    result_size: Option<i64>,
    result_status: Option<String>,
}

pub(crate) async fn task_detail(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiPath(task_id): ApiPath<i64>,
    ApiQuery(q): ApiQuery<DetailQuery>,
) -> ApiResult<Reply<Value>> {
    // A task has up to 100,000 results: they come a page at a time (default the first 100).
    let paging = Paging::new(q.result_page, q.result_size, 100, 1000)?;
    // The task, its result count and the page of results from one snapshot: the counts and a
    // result's status move in one transaction, and separate reads could straddle it (a task
    // shown COMPLETED beside a result still PENDING).
    let mut tx = state.db.begin_read().await?;
    let t = tx
        .fetch_optional::<store::TaskRow>(store::task_query(user.tenant_id, task_id))
        .await?
        .ok_or(ApiError::NotFound("group-send task"))?;
    let mut cond = query(" WHERE r.task_id = ?").bind(t.id);
    match q.result_status.filter(|s| !s.is_empty()) {
        // Results shown as PENDING include those waiting in WeCom (stored as SUBMITTED).
        Some(s) if s == result::PENDING => {
            cond.push_sql(" AND r.status IN (?, ?)")
                .push_bind(result::PENDING)
                .push_bind(result::SUBMITTED);
        }
        Some(s) => {
            cond.push_sql(" AND r.status = ?").push_bind(s);
        }
        None => {}
    }
    let mut count = query("SELECT COUNT(*) FROM t_group_send_result r");
    count.append(&cond);
    let result_total = tx.fetch_i64(count).await?;
    let mut page = query(
        "SELECT r.customer_id, c.name, r.external_userid, r.sender_userid, r.status, r.error_message \
         FROM t_group_send_result r LEFT JOIN customer c ON c.tenant_id = r.tenant_id AND c.id = r.customer_id",
    );
    page.append(&cond);
    page.push_sql(" ORDER BY r.id LIMIT ? OFFSET ?")
        .push_bind(paging.size)
        .push_bind(paging.offset());
    type ResultRow = (
        i64,
        Option<String>,
        Option<String>,
        Option<String>,
        String,
        Option<String>,
    );
    let rows: Vec<ResultRow> = tx.fetch_all(page).await?;
    tx.commit().await?;
    let sender_name: Option<String> = match &t.sender_account_id {
        Some(s) => account_name(&state, user.tenant_id, s).await?,
        None => None,
    };
    let mut sender_accounts = Vec::new();
    for id in crate::devices::group_send::senders_of(&t) {
        let acc =
            crate::devices::provider::resolve(&state.db, user.tenant_id, &id, "senderAccountIds")
                .await
                .ok();
        sender_accounts.push(json!({
            "accountId": id,
            "accountName": acc.as_ref().map(|a| a.account_name.clone()),
            "accountType": acc.as_ref().map(|a| a.provider.as_str()),
        }));
    }
    let results: Vec<Value> = rows
        .into_iter()
        .map(|(cid, name, ext, sender, st, err)| {
            json!({
                "customerId": cid,
                "customerName": name,
                "externalUserid": ext,
                "senderUserid": sender,
                // Seed 004 shows SUCCESS / FAILED / PENDING; SUBMITTED (waiting in WeCom for the
                // member to confirm) is still pending to the user, and kept in `stage`.
                "status": if st == "SUBMITTED" { "PENDING" } else { st.as_str() },
                "stage": st,
                "errorMessage": err,
            })
        })
        .collect();
    let content: Value =
        serde_json::from_str(t.message_content.as_deref().unwrap_or("null")).unwrap_or(Value::Null);
    let target: Value = serde_json::from_str(&t.target_ids).unwrap_or(Value::Null);
    Ok(ok(json!({
        "groupSendTaskId": t.id,
        "taskName": t.task_name,
        "senderAccount": t.sender_account_id.as_ref().map(|id| json!({"accountId": id, "accountName": sender_name})),
        "senderAccounts": sender_accounts,
        "messageContent": content,
        "target": target,
        "targetCount": t.target_count,
        "successCount": t.success_count,
        "failedCount": t.failed_count,
        "status": t.status,
        "scheduledTime": iso_opt(t.scheduled_time),
        "createTime": iso(t.create_time),
        "updateTime": iso(t.update_time),
        "results": results,
        "resultTotal": result_total,
        "resultPage": paging.page,
        "resultSize": paging.size,
    })))
}

/// A sender account's name: a WeCom member's or a device account's.
async fn account_name(state: &AppState, tenant_id: i64, id: &str) -> ApiResult<Option<String>> {
    let staff: Option<(String,)> = state
        .db
        .fetch_optional(
            query("SELECT name FROM staff WHERE tenant_id = ? AND userid = ?")
                .bind(tenant_id)
                .bind(id),
        )
        .await?;
    if staff.is_some() {
        return Ok(staff.map(|r| r.0));
    }
    let device: Option<(String,)> = state
        .db
        .fetch_optional(
            query("SELECT nickname FROM device_account WHERE tenant_id = ? AND wxid = ?")
                .bind(tenant_id)
                .bind(id),
        )
        .await?;
    Ok(device.map(|r| r.0))
}

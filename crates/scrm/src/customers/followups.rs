//! Follow-up records (跟进记录: content, type, who, when, next follow-up date) and customer
//! stages (new → nurturing → active → won / lost by default; configurable per tenant).

use axum::extract::State;
use axum::http::Method;
use scrm_db::{Db, DbResult, Tx, query};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::model::parse_time;
use super::{cache, customer_not_found, store, timeline};
use crate::audit;
use crate::auth::CurrentUser;
use crate::auth::permissions as perm;
use crate::events;
use crate::http::envelope::{ListPage, Paging, Reply, created, ok};
use crate::http::error::{ApiError, ApiResult};
use crate::http::extract::{ApiJson, ApiPath, ApiQuery};
use crate::http::routes::{Access, Routes};
use crate::state::{AppState, iso, iso_opt, now_ms};

pub fn routes(state: &AppState) -> Routes {
    use Method as M;
    Routes::new(state, "customers")
        .route(
            M::GET,
            "/api/v1/customers/{id}/follow-ups",
            Access::Permission(perm::CUSTOMER_VIEW),
            "A customer's follow-up records, newest first",
            list_route,
        )
        .route(
            M::POST,
            "/api/v1/customers/{id}/follow-ups",
            Access::Permission(perm::CUSTOMER_UPDATE),
            "Record a follow-up",
            create_route,
        )
        .route(
            M::GET,
            "/api/v1/customers/follow-up-reminders",
            Access::Permission(perm::CUSTOMER_VIEW),
            "Follow-ups with a next follow-up time, soonest first (status: pending, sent, failed)",
            reminders_route,
        )
        .route(
            M::PUT,
            "/api/v1/customers/{id}/stage",
            Access::Permission(perm::CUSTOMER_UPDATE),
            "Move a customer to another stage",
            change_stage,
        )
        .route(
            M::GET,
            "/api/v1/customer-stages",
            Access::Permission(perm::CUSTOMER_VIEW),
            "The tenant's customer stages",
            list_stages,
        )
        .route(
            M::PUT,
            "/api/v1/customer-stages",
            Access::Permission(perm::CUSTOMER_UPDATE),
            "Replace the tenant's customer stages",
            replace_stages,
        )
}

/// Follow-up types.
pub const TYPES: &[&str] = &["call", "visit", "wechat", "email", "meeting", "other"];

/// A follow-up as shown.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FollowUpView {
    pub id: i64,
    pub customer_id: i64,
    pub user_id: Option<i64>,
    pub content: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub next_follow_time: Option<String>,
    /// The reminder of the next follow-up time: pending, sending, sent, failed (None without
    /// a next follow-up time).
    pub reminder: Option<&'static str>,
    pub remind_error: Option<String>,
    pub create_time: String,
}

/// The name of a `follow_up.reminded` state.
pub fn reminder_name(next_follow_at: Option<i64>, reminded: i64) -> Option<&'static str> {
    use super::schedules::reminded as r;
    next_follow_at?;
    Some(match reminded {
        r::SENT => "sent",
        r::FAILED => "failed",
        r::SENDING => "sending",
        _ => "pending",
    })
}

#[derive(sqlx::FromRow)]
struct Row {
    id: i64,
    customer_id: i64,
    user_id: Option<i64>,
    content: String,
    follow_type: String,
    next_follow_at: Option<i64>,
    reminded: i64,
    remind_error: Option<String>,
    created_at: i64,
}

impl From<Row> for FollowUpView {
    fn from(r: Row) -> Self {
        FollowUpView {
            id: r.id,
            customer_id: r.customer_id,
            user_id: r.user_id,
            content: r.content,
            kind: r.follow_type,
            next_follow_time: iso_opt(r.next_follow_at),
            reminder: reminder_name(r.next_follow_at, r.reminded),
            remind_error: r.remind_error,
            create_time: iso(r.created_at),
        }
    }
}

const ROW_COLUMNS: &str = "id, customer_id, user_id, content, follow_type, next_follow_at, reminded, remind_error, created_at";

/// A page of a customer's follow-ups, newest first, and the total.
pub async fn list(
    db: &Db,
    tenant_id: i64,
    customer_id: i64,
    offset: i64,
    limit: i64,
) -> DbResult<(Vec<FollowUpView>, i64)> {
    let total = db
        .fetch_i64(
            query("SELECT COUNT(*) FROM follow_up WHERE tenant_id = ? AND customer_id = ?")
                .bind(tenant_id)
                .bind(customer_id),
        )
        .await?;
    let rows: Vec<Row> = db
        .fetch_all(
            query(format!("SELECT {ROW_COLUMNS} FROM follow_up WHERE tenant_id = ? AND customer_id = ? ORDER BY id DESC LIMIT ? OFFSET ?"))
                .bind(tenant_id)
                .bind(customer_id)
                .bind(limit)
                .bind(offset),
        )
        .await?;
    Ok((rows.into_iter().map(FollowUpView::from).collect(), total))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PageQuery {
    page: Option<i64>,
    size: Option<i64>,
}

async fn list_route(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiPath(id): ApiPath<i64>,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> ApiResult<Reply<ListPage<FollowUpView>>> {
    let paging = Paging::new(q.page, q.size, 20, 200)?;
    store::version(&state.db, user.tenant_id, id)
        .await?
        .ok_or_else(customer_not_found)?;
    let (list, total) = list(&state.db, user.tenant_id, id, paging.offset(), paging.size).await?;
    Ok(ok(ListPage {
        list,
        total,
        page: paging.page,
        size: paging.size,
    }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RemindersQuery {
    page: Option<i64>,
    size: Option<i64>,
    status: Option<String>,
}

/// Every follow-up of the tenant with a next follow-up time, soonest first.
async fn reminders_route(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiQuery(q): ApiQuery<RemindersQuery>,
) -> ApiResult<Reply<ListPage<FollowUpView>>> {
    use super::schedules::reminded as r;
    let paging = Paging::new(q.page, q.size, 20, 200)?;
    let states: &[i64] = match q.status.as_deref() {
        None => &[r::PENDING, r::SENDING, r::SENT, r::FAILED],
        Some("pending") => &[r::PENDING, r::SENDING],
        Some("sent") => &[r::SENT],
        Some("failed") => &[r::FAILED],
        Some(_) => {
            return Err(ApiError::field("status", "one of pending, sent, failed"));
        }
    };
    let mut cond = query(
        " FROM follow_up WHERE tenant_id = ? AND next_follow_at IS NOT NULL AND reminded IN ",
    )
    .bind(user.tenant_id);
    cond.push_in_list(states.iter().copied());
    let mut count = query("SELECT COUNT(*)");
    count.append(&cond);
    let total = state.db.fetch_i64(count).await?;
    let mut page = query(format!("SELECT {ROW_COLUMNS}"));
    page.append(&cond);
    page.push_sql(" ORDER BY next_follow_at, id LIMIT ? OFFSET ?")
        .push_bind(paging.size)
        .push_bind(paging.offset());
    let rows: Vec<Row> = state.db.fetch_all(page).await?;
    Ok(ok(ListPage {
        list: rows.into_iter().map(FollowUpView::from).collect(),
        total,
        page: paging.page,
        size: paging.size,
    }))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct FollowUpBody {
    content: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
    next_follow_time: Option<serde_json::Value>,
}

async fn create_route(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiPath(id): ApiPath<i64>,
    ApiJson(b): ApiJson<FollowUpBody>,
) -> ApiResult<Reply<FollowUpView>> {
    let content = b
        .content
        .as_deref()
        .map(str::trim)
        .unwrap_or("")
        .to_string();
    if content.is_empty() || content.chars().count() > 2000 {
        return Err(ApiError::field("content", "1-2000 characters"));
    }
    let kind = b.kind.unwrap_or_else(|| "other".into());
    if !TYPES.contains(&kind.as_str()) {
        return Err(ApiError::field(
            "type",
            format!("one of {}", TYPES.join(", ")),
        ));
    }
    let next = match &b.next_follow_time {
        Some(v) => parse_time("nextFollowTime", v)?,
        None => None,
    };
    let now = now_ms();
    let mut tx = state.db.begin().await?;
    let before = store::lock(&mut tx, user.tenant_id, id)
        .await?
        .ok_or_else(customer_not_found)?;
    let fid = tx
        .insert_id(
            query("INSERT INTO follow_up (tenant_id, customer_id, user_id, content, follow_type, next_follow_at, reminded, created_at) VALUES (?, ?, ?, ?, ?, ?, 0, ?)")
                .bind(user.tenant_id)
                .bind(id)
                .bind(user.id)
                .bind(content.as_str())
                .bind(kind.as_str())
                .bind(next)
                .bind(now),
        )
        .await?;
    // A follow-up is an interaction: churn rules on inactivity look at last_active_at, and the
    // customer counts as active today (once a day).
    super::stats::record_active(&mut tx, user.tenant_id, before.last_active_at, now).await?;
    tx.execute(query("UPDATE customer SET last_active_at = ?, version = version + 1 WHERE tenant_id = ? AND id = ?").bind(now).bind(user.tenant_id).bind(id)).await?;
    let summary: String = content.chars().take(100).collect();
    timeline::record(
        &mut tx,
        user.tenant_id,
        id,
        timeline::kind::FOLLOW_UP,
        &summary,
        json!({"followUpId": fid, "type": kind, "by": user.username}),
    )
    .await?;
    events::emit(
        &mut tx,
        user.tenant_id,
        events::kind::CUSTOMER_FOLLOW_UP_CREATED,
        id,
        json!({"customerId": id, "followUpId": fid, "nextFollowTime": iso_opt(next)}),
    )
    .await?;
    audit::record(
        &mut tx,
        &user,
        "customer.follow_up.create",
        "customer",
        id,
        json!({"followUpId": fid}),
    )
    .await?;
    tx.commit().await?;
    Ok(created(FollowUpView {
        id: fid,
        customer_id: id,
        user_id: Some(user.id),
        content,
        kind,
        next_follow_time: iso_opt(next),
        reminder: reminder_name(next, 0),
        remind_error: None,
        create_time: iso(now),
    }))
}

/// A customer stage.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Stage {
    pub code: String,
    pub name: String,
    #[serde(default)]
    pub sort_order: i64,
    #[serde(default)]
    pub is_final: bool,
}

/// The stages a tenant without its own uses.
pub fn default_stages() -> Vec<Stage> {
    [
        ("new", "新客户", false),
        ("nurturing", "培育中", false),
        ("active", "活跃", false),
        ("won", "已成交", true),
        ("lost", "已流失", true),
    ]
    .into_iter()
    .enumerate()
    .map(|(i, (code, name, fin))| Stage {
        code: code.into(),
        name: name.into(),
        sort_order: i as i64 + 1,
        is_final: fin,
    })
    .collect()
}

#[derive(sqlx::FromRow)]
struct StageRow {
    code: String,
    name: String,
    sort_order: i64,
    is_final: i64,
}

async fn stages_q(rows: Vec<StageRow>) -> Vec<Stage> {
    if rows.is_empty() {
        return default_stages();
    }
    rows.into_iter()
        .map(|r| Stage {
            code: r.code,
            name: r.name,
            sort_order: r.sort_order,
            is_final: r.is_final != 0,
        })
        .collect()
}

const STAGES_SQL: &str = "SELECT code, name, sort_order, is_final FROM customer_stage WHERE tenant_id = ? ORDER BY sort_order, id";

/// The tenant's stages (the defaults when it has none).
pub async fn stages(db: &Db, tenant_id: i64) -> DbResult<Vec<Stage>> {
    Ok(stages_q(db.fetch_all(query(STAGES_SQL).bind(tenant_id)).await?).await)
}

/// A 400 naming `stage` unless `code` is one of the tenant's stages.
pub async fn check_stage(tx: &mut Tx, tenant_id: i64, code: &str) -> ApiResult<()> {
    let all = stages_q(tx.fetch_all(query(STAGES_SQL).bind(tenant_id)).await?).await;
    if all.iter().any(|s| s.code == code) {
        Ok(())
    } else {
        let codes: Vec<String> = all.into_iter().map(|s| s.code).collect();
        Err(ApiError::field(
            "stage",
            format!("one of {}", codes.join(", ")),
        ))
    }
}

/// Record a stage change (timeline and event) in the same transaction as the update.
pub async fn stage_changed(
    tx: &mut Tx,
    tenant_id: i64,
    customer_id: i64,
    from: &str,
    to: &str,
) -> DbResult<()> {
    timeline::record(
        tx,
        tenant_id,
        customer_id,
        timeline::kind::STAGE,
        &format!("stage {from} → {to}"),
        json!({"from": from, "to": to}),
    )
    .await?;
    events::emit(
        tx,
        tenant_id,
        events::kind::CUSTOMER_STAGE_CHANGED,
        customer_id,
        json!({"customerId": customer_id, "from": from, "to": to}),
    )
    .await
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct StageBody {
    stage: Option<String>,
}

async fn change_stage(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiPath(id): ApiPath<i64>,
    ApiJson(b): ApiJson<StageBody>,
) -> ApiResult<Reply<serde_json::Value>> {
    let to = b
        .stage
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .ok_or_else(|| ApiError::field("stage", "is required"))?;
    let now = now_ms();
    let mut tx = state.db.begin().await?;
    let before = store::lock(&mut tx, user.tenant_id, id)
        .await?
        .ok_or_else(customer_not_found)?;
    check_stage(&mut tx, user.tenant_id, &to).await?;
    if before.stage != to {
        tx.execute(query("UPDATE customer SET stage = ?, version = version + 1, updated_at = ? WHERE tenant_id = ? AND id = ?").bind(to.as_str()).bind(now).bind(user.tenant_id).bind(id)).await?;
        stage_changed(&mut tx, user.tenant_id, id, &before.stage, &to).await?;
        audit::record(
            &mut tx,
            &user,
            "customer.stage",
            "customer",
            id,
            json!({"from": before.stage, "to": to}),
        )
        .await?;
    }
    tx.commit().await?;
    cache::invalidate(&state, user.tenant_id, &[id]).await;
    Ok(ok(json!({"id": id, "stage": to, "previous": before.stage})))
}

async fn list_stages(
    State(state): State<AppState>,
    user: CurrentUser,
) -> ApiResult<Reply<Vec<Stage>>> {
    Ok(ok(stages(&state.db, user.tenant_id).await?))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct StagesBody {
    stages: Option<Vec<Stage>>,
}

async fn replace_stages(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiJson(b): ApiJson<StagesBody>,
) -> ApiResult<Reply<Vec<Stage>>> {
    let list = b
        .stages
        .ok_or_else(|| ApiError::field("stages", "is required"))?;
    if list.is_empty() || list.len() > 20 {
        return Err(ApiError::field("stages", "1-20 stages"));
    }
    let mut seen = std::collections::HashSet::new();
    for (i, s) in list.iter().enumerate() {
        let ok_code = !s.code.is_empty()
            && s.code.len() <= 32
            && s.code
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if !ok_code {
            return Err(ApiError::field(
                format!("stages[{i}].code"),
                "1-32 letters, digits, _ or -",
            ));
        }
        if s.name.trim().is_empty() || s.name.chars().count() > 100 {
            return Err(ApiError::field(
                format!("stages[{i}].name"),
                "1-100 characters",
            ));
        }
        if !seen.insert(s.code.clone()) {
            return Err(ApiError::field(
                format!("stages[{i}].code"),
                "duplicate code",
            ));
        }
    }
    if !list.iter().any(|s| s.code == "new") {
        return Err(ApiError::field(
            "stages",
            "must keep the stage `new` (new customers start there)",
        ));
    }
    let now = now_ms();
    let mut tx = state.db.begin().await?;
    tx.execute(query("DELETE FROM customer_stage WHERE tenant_id = ?").bind(user.tenant_id))
        .await?;
    for (i, s) in list.iter().enumerate() {
        tx.execute(
            query("INSERT INTO customer_stage (tenant_id, code, name, sort_order, is_final, created_at) VALUES (?, ?, ?, ?, ?, ?)")
                .bind(user.tenant_id)
                .bind(s.code.as_str())
                .bind(s.name.trim())
                .bind(if s.sort_order == 0 { i as i64 + 1 } else { s.sort_order })
                .bind(s.is_final)
                .bind(now),
        )
        .await?;
    }
    audit::record(
        &mut tx,
        &user,
        "customer.stages.replace",
        "customer_stage",
        0,
        json!({"codes": list.iter().map(|s| &s.code).collect::<Vec<_>>()}),
    )
    .await?;
    tx.commit().await?;
    Ok(ok(stages(&state.db, user.tenant_id).await?))
}

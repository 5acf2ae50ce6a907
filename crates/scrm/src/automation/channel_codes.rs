//! Channel codes (渠道活码): a WeCom 「联系我」 contact way per code, with a `state` WeCom echoes in
//! the add_external_contact callback, so scrm knows which code a new customer came through.
//!
//! A code has staff (each with a daily add limit, 0 = none) and backup staff. The contact way
//! routes to the *active* members: the staff still under their limit today (Asia/Shanghai), or
//! the backup staff once every one of them is full. Every write bumps the code's version and
//! enqueues `automation.channel_code.push` in the same transaction; the push job (one at a time
//! per code) creates, updates or deletes the contact way in WeCom and stores its config_id and
//! QR code. Contact ways are always WeCom's multi-member type (2), so members can rotate without
//! a new QR code.

use axum::extract::State;
use axum::http::Method;
use rand::Rng;
use scrm_db::{Db, DbResult, Tx, query};
use scrm_jobs::{JobContext, JobError, JobOutcome, KeyLimit, NewJob};
use scrm_wecom::client::ContactWay;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::welcome::{WelcomeContent, check_staff};
use super::{WorkHours, day_of, json_col};
use crate::audit;
use crate::auth::CurrentUser;
use crate::auth::permissions as perm;
use crate::http::envelope::{ListPage, Paging, Reply, created, ok};
use crate::http::extract::{ApiJson, ApiPath, ApiQuery};
use crate::http::routes::{Access, Routes};
use crate::http::{ApiError, ApiResult};
use crate::operation::wecom::client_for;
use crate::state::{AppState, iso, now_ms};

/// Job kind: make WeCom's contact way match the code.
pub const PUSH: &str = "automation.channel_code.push";

/// The channel-code routes.
pub fn routes(state: &AppState) -> Routes {
    Routes::new(state, "automation")
        .route(
            Method::POST,
            "/api/v1/channel-codes",
            Access::Permission(perm::CHANNEL_CODE_MANAGE),
            "Create a channel code (WeCom contact way with a state; staff with daily limits and working hours, backup staff, tags, owner, welcome)",
            create_code,
        )
        .route(
            Method::GET,
            "/api/v1/channel-codes",
            Access::Permission(perm::CHANNEL_CODE_VIEW),
            "List channel codes (page, size, keyword)",
            list_codes,
        )
        .route(
            Method::GET,
            "/api/v1/channel-codes/{id}",
            Access::Permission(perm::CHANNEL_CODE_VIEW),
            "One channel code with its QR code and sync status",
            get_code,
        )
        .route(
            Method::PUT,
            "/api/v1/channel-codes/{id}",
            Access::Permission(perm::CHANNEL_CODE_MANAGE),
            "Change a channel code (pushed to WeCom by a job)",
            update_code,
        )
        .route(
            Method::DELETE,
            "/api/v1/channel-codes/{id}",
            Access::Permission(perm::CHANNEL_CODE_MANAGE),
            "Delete a channel code (its contact way is deleted in WeCom; statistics stay)",
            delete_code,
        )
        .route(
            Method::GET,
            "/api/v1/channel-codes/{id}/statistics",
            Access::Permission(perm::CHANNEL_CODE_VIEW),
            "Adds and losses per day and per member (days: 1-90, default 30)",
            statistics,
        )
}

/// A member of a code: their daily add limit (0: none) and working hours (`workDays` 1-7,
/// `workStart`-`workEnd` HH:MM, Asia/Shanghai; none: always).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct StaffLimit {
    pub userid: String,
    pub daily_limit: i64,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub work_days: Vec<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub work_start: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub work_end: Option<String>,
}

impl StaffLimit {
    pub fn hours(&self) -> WorkHours {
        WorkHours {
            days: self.work_days.clone(),
            start: self.work_start.clone(),
            end: self.work_end.clone(),
        }
    }
}

/// A stored code.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct CodeRow {
    pub id: i64,
    pub tenant_id: i64,
    pub name: String,
    pub state: String,
    pub skip_verify: i64,
    pub staff: String,
    pub backup_staff: String,
    pub active_users: Option<String>,
    pub tag_ids: String,
    pub owner_staff_id: Option<i64>,
    pub welcome: Option<String>,
    pub remark: Option<String>,
    pub config_id: Option<String>,
    pub qr_code: Option<String>,
    pub sync_status: String,
    pub sync_error: Option<String>,
    pub version: i64,
    pub deleted: i64,
    pub created_at: i64,
    pub updated_at: i64,
}

const COLUMNS: &str = "id, tenant_id, name, state, skip_verify, staff, backup_staff, active_users, \
     tag_ids, owner_staff_id, welcome, remark, config_id, qr_code, sync_status, sync_error, \
     version, deleted, created_at, updated_at";

impl CodeRow {
    pub fn staff(&self) -> Vec<StaffLimit> {
        json_col(Some(&self.staff))
    }
    pub fn backup_staff(&self) -> Vec<String> {
        json_col(Some(&self.backup_staff))
    }
    pub fn tag_ids(&self) -> Vec<i64> {
        json_col(Some(&self.tag_ids))
    }
    pub fn welcome(&self) -> Option<WelcomeContent> {
        self.welcome
            .as_deref()
            .and_then(|w| serde_json::from_str(w).ok())
    }
}

/// A code by id (deleted ones too).
pub async fn get(db: &Db, tenant_id: i64, id: i64) -> DbResult<Option<CodeRow>> {
    db.fetch_optional(
        query(format!(
            "SELECT {COLUMNS} FROM channel_code WHERE tenant_id = ? AND id = ?"
        ))
        .bind(tenant_id)
        .bind(id),
    )
    .await
}

/// The live code with this `state`, if any.
pub async fn by_state(db: &Db, tenant_id: i64, state: &str) -> DbResult<Option<CodeRow>> {
    db.fetch_optional(
        query(format!(
            "SELECT {COLUMNS} FROM channel_code WHERE tenant_id = ? AND state = ? AND deleted = 0"
        ))
        .bind(tenant_id)
        .bind(state),
    )
    .await
}

/// Adds per member of a code on one day.
pub async fn adds_on(
    db: &Db,
    tenant_id: i64,
    code_id: i64,
    day: &str,
) -> DbResult<Vec<(String, i64)>> {
    db.fetch_all(
        query(
            "SELECT staff_userid, COUNT(*) FROM channel_code_add WHERE tenant_id = ? AND code_id = ? \
             AND add_day = ? GROUP BY staff_userid",
        )
        .bind(tenant_id)
        .bind(code_id)
        .bind(day),
    )
    .await
}

/// The members the contact way should route to at `now`: staff inside their working hours and
/// under their limit today, else the backup staff, else (no backup) every staff member — WeCom
/// needs at least one.
pub fn active_users(
    staff: &[StaffLimit],
    backup: &[String],
    adds_today: &[(String, i64)],
    now: i64,
) -> Vec<String> {
    let count = |u: &str| {
        adds_today
            .iter()
            .find(|(s, _)| s == u)
            .map_or(0, |(_, n)| *n)
    };
    let open: Vec<String> = staff
        .iter()
        .filter(|s| s.daily_limit <= 0 || count(&s.userid) < s.daily_limit)
        .filter(|s| s.hours().works_at(now))
        .map(|s| s.userid.clone())
        .collect();
    if !open.is_empty() {
        open
    } else if !backup.is_empty() {
        backup.to_vec()
    } else {
        staff.iter().map(|s| s.userid.clone()).collect()
    }
}

/// The push job for a code's current version (one per version; one at a time per code).
pub fn push_job(tenant_id: i64, code_id: i64, why: &str) -> Result<NewJob, scrm_jobs::JobsError> {
    Ok(
        NewJob::new(PUSH, &json!({"tenantId": tenant_id, "codeId": code_id}))?
            .tenant(tenant_id)
            .unique_key(format!("cc:push:{code_id}:{why}"))
            .limited_by(format!("cc:{code_id}"), KeyLimit::concurrency(1)),
    )
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct CodeBody {
    name: Option<String>,
    state: Option<String>,
    #[serde(default)]
    staff: Vec<StaffLimit>,
    #[serde(default)]
    backup_staff: Vec<String>,
    skip_verify: Option<bool>,
    #[serde(default)]
    tag_ids: Vec<i64>,
    owner_staff_id: Option<i64>,
    welcome: Option<WelcomeContent>,
    remark: Option<String>,
}

pub(crate) struct Checked {
    name: String,
    state: String,
    staff: Vec<StaffLimit>,
    backup: Vec<String>,
    skip_verify: bool,
    tag_ids: Vec<i64>,
    owner: Option<i64>,
    welcome: Option<WelcomeContent>,
    remark: Option<String>,
}

fn new_state() -> String {
    let mut rng = rand::rng();
    let tail: String = (0..12)
        .map(|_| {
            let i = rng.random_range(0..36u8);
            (if i < 10 { b'0' + i } else { b'a' + i - 10 }) as char
        })
        .collect();
    format!("cc{tail}")
}

/// Check a body against the tenant's members, tags and materials; nothing is written.
pub(crate) async fn check(db: &Db, tenant_id: i64, mut b: CodeBody) -> ApiResult<Checked> {
    let name = b
        .name
        .map(|n| n.trim().to_string())
        .filter(|n| !n.is_empty())
        .ok_or_else(|| ApiError::field("name", "is required"))?;
    if name.chars().count() > 100 {
        return Err(ApiError::field("name", "at most 100 characters"));
    }
    let state = match b.state.map(|s| s.trim().to_string()) {
        None => new_state(),
        Some(s) if s.is_empty() => new_state(),
        Some(s) => {
            if s.chars().count() > 30 || s.chars().any(char::is_whitespace) {
                return Err(ApiError::field(
                    "state",
                    "at most 30 characters, without spaces (WeCom's limit)",
                ));
            }
            s
        }
    };
    if b.staff.is_empty() || b.staff.len() > 100 {
        return Err(ApiError::field("staff", "between 1 and 100 members"));
    }
    for (i, s) in b.staff.iter_mut().enumerate() {
        let hours = WorkHours::check(
            &s.work_days,
            s.work_start.as_deref(),
            s.work_end.as_deref(),
            |n| format!("staff[{i}].{n}"),
        )?;
        (s.work_days, s.work_start, s.work_end) = (hours.days, hours.start, hours.end);
    }
    for (i, s) in b.staff.iter().enumerate() {
        if s.userid.trim().is_empty() {
            return Err(ApiError::field(format!("staff[{i}].userid"), "is required"));
        }
        if !(0..=10_000).contains(&s.daily_limit) {
            return Err(ApiError::field(
                format!("staff[{i}].dailyLimit"),
                "between 0 (no limit) and 10000",
            ));
        }
        if b.staff[..i].iter().any(|o| o.userid == s.userid) {
            return Err(ApiError::field(
                format!("staff[{i}].userid"),
                format!("{} is listed twice", s.userid),
            ));
        }
    }
    let userids: Vec<String> = b.staff.iter().map(|s| s.userid.clone()).collect();
    check_staff(db, tenant_id, &userids, "staff").await?;
    if b.backup_staff.len() > 100 {
        return Err(ApiError::field("backupStaff", "at most 100 members"));
    }
    let mut backup = b.backup_staff;
    backup.dedup();
    if let Some(u) = backup.iter().find(|u| userids.contains(u)) {
        return Err(ApiError::field(
            "backupStaff",
            format!("{u} is already in staff"),
        ));
    }
    check_staff(db, tenant_id, &backup, "backupStaff").await?;
    let mut tag_ids = b.tag_ids;
    tag_ids.sort_unstable();
    tag_ids.dedup();
    if !tag_ids.is_empty() {
        let mut q =
            query("SELECT COUNT(*) FROM tag WHERE tenant_id = ? AND id IN ").bind(tenant_id);
        q.push_in_list(tag_ids.iter().copied());
        if db.fetch_i64(q).await? != tag_ids.len() as i64 {
            return Err(ApiError::field("tagIds", "unknown tag"));
        }
    }
    if let Some(owner) = b.owner_staff_id {
        let n = db
            .fetch_i64(
                query("SELECT COUNT(*) FROM staff WHERE tenant_id = ? AND id = ?")
                    .bind(tenant_id)
                    .bind(owner),
            )
            .await?;
        if n == 0 {
            return Err(ApiError::field("ownerStaffId", "no such member"));
        }
    }
    if let Some(w) = &b.welcome {
        w.check(db, tenant_id, "welcome").await?;
    }
    let remark = b.remark.filter(|r| !r.trim().is_empty());
    if remark.as_ref().is_some_and(|r| r.chars().count() > 255) {
        return Err(ApiError::field("remark", "at most 255 characters"));
    }
    Ok(Checked {
        name,
        state,
        staff: b.staff,
        backup,
        skip_verify: b.skip_verify.unwrap_or(true),
        tag_ids,
        owner: b.owner_staff_id,
        welcome: b.welcome,
        remark,
    })
}

pub(crate) async fn state_taken(
    db: &Db,
    tenant_id: i64,
    state: &str,
    except: i64,
) -> DbResult<bool> {
    Ok(db
        .fetch_i64(
            query(
                "SELECT COUNT(*) FROM channel_code WHERE tenant_id = ? AND state = ? AND id <> ?",
            )
            .bind(tenant_id)
            .bind(state)
            .bind(except),
        )
        .await?
        > 0)
}

fn conflict(state: &str) -> ApiError {
    ApiError::Conflict(format!(
        "state {state:?} belongs to another channel code (states are never reused)"
    ))
}

/// The code as the API shows it, with today's adds per member.
pub(crate) async fn view(db: &Db, r: CodeRow) -> DbResult<Value> {
    let now = now_ms();
    let today = adds_on(db, r.tenant_id, r.id, &day_of(now)).await?;
    let count = |u: &str| today.iter().find(|(s, _)| s == u).map_or(0, |(_, n)| *n);
    let staff: Vec<Value> = r
        .staff()
        .iter()
        .map(|s| {
            let mut v = json!({"userid": s.userid, "dailyLimit": s.daily_limit, "addsToday": count(&s.userid), "working": s.hours().works_at(now)});
            if s.hours().is_set() {
                v["workDays"] = json!(s.work_days);
                v["workStart"] = json!(s.work_start);
                v["workEnd"] = json!(s.work_end);
            }
            v
        })
        .collect();
    let active: Vec<String> = json_col(r.active_users.as_deref());
    Ok(json!({
        "id": r.id,
        "name": r.name,
        "state": r.state,
        "staff": staff,
        "backupStaff": r.backup_staff(),
        "activeUsers": active,
        "skipVerify": r.skip_verify == 1,
        "tagIds": r.tag_ids(),
        "ownerStaffId": r.owner_staff_id,
        "welcome": r.welcome(),
        "remark": r.remark,
        "configId": r.config_id,
        "qrCode": r.qr_code,
        "syncStatus": r.sync_status,
        "syncError": r.sync_error,
        "createTime": iso(r.created_at),
        "updateTime": iso(r.updated_at),
    }))
}

pub(crate) async fn live(db: &Db, tenant_id: i64, id: i64) -> ApiResult<CodeRow> {
    get(db, tenant_id, id)
        .await?
        .filter(|r| r.deleted == 0)
        .ok_or(ApiError::NotFound("channel code"))
}

pub(crate) async fn create_code(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiJson(body): ApiJson<CodeBody>,
) -> ApiResult<Reply<Value>> {
    let c = check(&state.db, user.tenant_id, body).await?;
    if state_taken(&state.db, user.tenant_id, &c.state, 0).await? {
        return Err(conflict(&c.state));
    }
    let now = now_ms();
    let mut tx = state.db.begin().await?;
    let id = tx
        .insert_id(
            query(
                "INSERT INTO channel_code (tenant_id, name, state, code_type, skip_verify, staff, backup_staff, \
                 tag_ids, owner_staff_id, welcome, remark, sync_status, version, created_by, created_at, updated_at) \
                 VALUES (?, ?, ?, 2, ?, ?, ?, ?, ?, ?, ?, 'pending', 1, ?, ?, ?)",
            )
            .bind(user.tenant_id)
            .bind(&c.name)
            .bind(&c.state)
            .bind(c.skip_verify as i64)
            .bind(json!(c.staff).to_string())
            .bind(json!(c.backup).to_string())
            .bind(json!(c.tag_ids).to_string())
            .bind(c.owner)
            .bind(c.welcome.as_ref().map(|w| json!(w).to_string()))
            .bind(c.remark.clone())
            .bind(user.id)
            .bind(now)
            .bind(now),
        )
        .await
        .map_err(|e| if e.is_conflict() { conflict(&c.state) } else { e.into() })?;
    enqueue_push(&state, &mut tx, user.tenant_id, id, "v1").await?;
    audit::record(
        &mut tx,
        &user,
        "channel_code.create",
        "channel_code",
        id,
        json!({"name": c.name, "state": c.state}),
    )
    .await?;
    tx.commit().await?;
    let row = live(&state.db, user.tenant_id, id).await?;
    Ok(created(view(&state.db, row).await?))
}

pub(crate) async fn enqueue_push(
    state: &AppState,
    tx: &mut Tx,
    tenant_id: i64,
    id: i64,
    why: &str,
) -> ApiResult<()> {
    let job = push_job(tenant_id, id, why).map_err(anyhow::Error::from)?;
    state
        .jobs
        .enqueue(tx, job)
        .await
        .map_err(anyhow::Error::from)?;
    Ok(())
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ListQuery {
    page: Option<i64>,
    size: Option<i64>,
    keyword: Option<String>,
}

pub(crate) async fn list_codes(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> ApiResult<Reply<ListPage<Value>>> {
    let paging = Paging::new(q.page, q.size, 20, 100)?;
    let mut cond = query(" WHERE tenant_id = ? AND deleted = 0").bind(user.tenant_id);
    if let Some(k) = q.keyword.filter(|k| !k.is_empty()) {
        cond.push_sql(" AND name LIKE ?")
            .push_bind(format!("%{k}%"));
    }
    let mut count = query("SELECT COUNT(*) FROM channel_code");
    count.append(&cond);
    let total = state.db.fetch_i64(count).await?;
    let mut page = query(format!("SELECT {COLUMNS} FROM channel_code"));
    page.append(&cond);
    page.push_sql(" ORDER BY id DESC LIMIT ? OFFSET ?")
        .push_bind(paging.size)
        .push_bind(paging.offset());
    let rows: Vec<CodeRow> = state.db.fetch_all(page).await?;
    let mut list = Vec::with_capacity(rows.len());
    for r in rows {
        list.push(view(&state.db, r).await?);
    }
    Ok(ok(ListPage {
        list,
        total,
        page: paging.page,
        size: paging.size,
    }))
}

pub(crate) async fn get_code(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Reply<Value>> {
    let row = live(&state.db, user.tenant_id, id).await?;
    Ok(ok(view(&state.db, row).await?))
}

pub(crate) async fn update_code(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiPath(id): ApiPath<i64>,
    ApiJson(body): ApiJson<CodeBody>,
) -> ApiResult<Reply<Value>> {
    let existing = live(&state.db, user.tenant_id, id).await?;
    let mut body = body;
    // An update without a state keeps the code's: its printed QR codes stay valid.
    if body.state.as_deref().is_none_or(|s| s.trim().is_empty()) {
        body.state = Some(existing.state.clone());
    }
    let c = check(&state.db, user.tenant_id, body).await?;
    if state_taken(&state.db, user.tenant_id, &c.state, id).await? {
        return Err(conflict(&c.state));
    }
    let mut tx = state.db.begin().await?;
    let n = tx
        .execute(
            query(
                "UPDATE channel_code SET name = ?, state = ?, skip_verify = ?, staff = ?, backup_staff = ?, \
                 tag_ids = ?, owner_staff_id = ?, welcome = ?, remark = ?, sync_status = 'pending', \
                 version = version + 1, updated_at = ? WHERE tenant_id = ? AND id = ? AND deleted = 0",
            )
            .bind(&c.name)
            .bind(&c.state)
            .bind(c.skip_verify as i64)
            .bind(json!(c.staff).to_string())
            .bind(json!(c.backup).to_string())
            .bind(json!(c.tag_ids).to_string())
            .bind(c.owner)
            .bind(c.welcome.as_ref().map(|w| json!(w).to_string()))
            .bind(c.remark.clone())
            .bind(now_ms())
            .bind(user.tenant_id)
            .bind(id),
        )
        .await
        .map_err(|e| if e.is_conflict() { conflict(&c.state) } else { e.into() })?
        .rows_affected;
    if n == 0 {
        return Err(ApiError::NotFound("channel code"));
    }
    let version = tx
        .fetch_i64(
            query("SELECT version FROM channel_code WHERE tenant_id = ? AND id = ?")
                .bind(user.tenant_id)
                .bind(id),
        )
        .await?;
    enqueue_push(&state, &mut tx, user.tenant_id, id, &format!("v{version}")).await?;
    audit::record(
        &mut tx,
        &user,
        "channel_code.update",
        "channel_code",
        id,
        json!({"name": c.name, "state": c.state}),
    )
    .await?;
    tx.commit().await?;
    let row = live(&state.db, user.tenant_id, id).await?;
    Ok(ok(view(&state.db, row).await?))
}

pub(crate) async fn delete_code(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Reply<Value>> {
    let mut tx = state.db.begin().await?;
    let n = tx
        .execute(
            query(
                "UPDATE channel_code SET deleted = 1, sync_status = 'pending', version = version + 1, updated_at = ? \
                 WHERE tenant_id = ? AND id = ? AND deleted = 0",
            )
            .bind(now_ms())
            .bind(user.tenant_id)
            .bind(id),
        )
        .await?
        .rows_affected;
    if n == 0 {
        return Err(ApiError::NotFound("channel code"));
    }
    enqueue_push(&state, &mut tx, user.tenant_id, id, "delete").await?;
    audit::record(
        &mut tx,
        &user,
        "channel_code.delete",
        "channel_code",
        id,
        json!({}),
    )
    .await?;
    tx.commit().await?;
    Ok(ok(json!({"id": id, "deleted": true})))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct StatsQuery {
    days: Option<i64>,
}

pub(crate) async fn statistics(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiPath(id): ApiPath<i64>,
    ApiQuery(q): ApiQuery<StatsQuery>,
) -> ApiResult<Reply<Value>> {
    let days = q.days.unwrap_or(30);
    if !(1..=90).contains(&days) {
        return Err(ApiError::field("days", "between 1 and 90"));
    }
    let code = get(&state.db, user.tenant_id, id)
        .await?
        .ok_or(ApiError::NotFound("channel code"))?;
    let t = user.tenant_id;
    let now = now_ms();
    let dates: Vec<String> = (0..days)
        .rev()
        .map(|d| day_of(now - d * 86_400_000))
        .collect();
    let first = dates[0].clone();
    let adds: Vec<(String, i64)> = state
        .db
        .fetch_all(
            query("SELECT add_day, COUNT(*) FROM channel_code_add WHERE tenant_id = ? AND code_id = ? AND add_day >= ? GROUP BY add_day")
                .bind(t)
                .bind(id)
                .bind(&first),
        )
        .await?;
    let losses: Vec<(String, i64)> = state
        .db
        .fetch_all(
            query("SELECT lost_day, COUNT(*) FROM channel_code_add WHERE tenant_id = ? AND code_id = ? AND lost_day >= ? GROUP BY lost_day")
                .bind(t)
                .bind(id)
                .bind(&first),
        )
        .await?;
    let find = |v: &[(String, i64)], d: &str| v.iter().find(|(x, _)| x == d).map_or(0, |(_, n)| *n);
    let daily: Vec<Value> = dates
        .iter()
        .map(|d| json!({"date": d, "adds": find(&adds, d), "losses": find(&losses, d)}))
        .collect();
    let (total_adds, total_losses): (i64, i64) = {
        let total = state
            .db
            .fetch_i64(
                query("SELECT COUNT(*) FROM channel_code_add WHERE tenant_id = ? AND code_id = ?")
                    .bind(t)
                    .bind(id),
            )
            .await?;
        let lost = state
            .db
            .fetch_i64(query("SELECT COUNT(*) FROM channel_code_add WHERE tenant_id = ? AND code_id = ? AND lost_at IS NOT NULL").bind(t).bind(id))
            .await?;
        (total, lost)
    };
    let per_staff: Vec<(String, i64, i64)> = state
        .db
        .fetch_all(
            query(
                "SELECT staff_userid, COUNT(*), COUNT(lost_at) \
                 FROM channel_code_add WHERE tenant_id = ? AND code_id = ? GROUP BY staff_userid ORDER BY staff_userid",
            )
            .bind(t)
            .bind(id),
        )
        .await?;
    let staff: Vec<Value> = per_staff
        .into_iter()
        .map(|(u, a, l)| json!({"userid": u, "adds": a, "losses": l}))
        .collect();
    Ok(ok(json!({
        "codeId": code.id,
        "name": code.name,
        "state": code.state,
        "totalAdds": total_adds,
        "totalLosses": total_losses,
        "netAdds": total_adds - total_losses,
        "daily": daily,
        "staff": staff,
    })))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct PushPayload {
    tenant_id: i64,
    code_id: i64,
}

fn wecom_failure(e: scrm_wecom::WeComError, ctx: &JobContext) -> Result<String, JobError> {
    if e.is_transient() && !ctx.is_last_attempt() {
        return Err(JobError::retryable(e.to_string()));
    }
    Ok(e.to_string())
}

/// `automation.channel_code.push`: create, update or delete the code's contact way in WeCom.
pub async fn run_push(state: AppState, ctx: JobContext, p: Value) -> Result<JobOutcome, JobError> {
    let p: PushPayload = serde_json::from_value(p)?;
    let Some(row) = get(&state.db, p.tenant_id, p.code_id).await? else {
        return Ok(JobOutcome::Done);
    };
    let wecom = client_for(&state, p.tenant_id)
        .await
        .map_err(JobError::retryable)?;
    let db = &state.db;
    if row.deleted == 1 {
        if row.sync_status == "deleted" {
            return Ok(JobOutcome::Done);
        }
        let error = match &row.config_id {
            None => None,
            Some(cfg) => match wecom.app.del_contact_way(cfg).await {
                Ok(()) => None,
                // Already gone in WeCom.
                Err(e) if e.errcode() == Some(40058) => None,
                Err(e) => Some(wecom_failure(e, &ctx)?),
            },
        };
        db.execute(
            query("UPDATE channel_code SET sync_status = ?, sync_error = ? WHERE id = ?")
                .bind(if error.is_some() { "failed" } else { "deleted" })
                .bind(error)
                .bind(row.id),
        )
        .await?;
        return Ok(JobOutcome::Done);
    }
    let now = now_ms();
    let adds = adds_on(db, row.tenant_id, row.id, &day_of(now)).await?;
    let users = active_users(&row.staff(), &row.backup_staff(), &adds, now);
    let mut way = ContactWay {
        kind: 2,
        scene: 2,
        remark: row.name.chars().take(30).collect(),
        skip_verify: row.skip_verify == 1,
        state: row.state.clone(),
        user: users.clone(),
        ..Default::default()
    };
    let result = match &row.config_id {
        Some(cfg) => {
            way.config_id = cfg.clone();
            wecom.app.update_contact_way(&way).await.map(|_| None)
        }
        None => wecom.app.add_contact_way(&way).await.map(Some),
    };
    match result {
        Err(e) => {
            let msg = wecom_failure(e, &ctx)?;
            db.execute(
                query("UPDATE channel_code SET sync_status = 'failed', sync_error = ? WHERE id = ? AND version = ?")
                    .bind(msg)
                    .bind(row.id)
                    .bind(row.version),
            )
            .await?;
        }
        Ok(added) => {
            let (cfg, qr) = match added {
                Some(a) => (Some(a.config_id), Some(a.qr_code).filter(|q| !q.is_empty())),
                None => (None, None),
            };
            db.execute(
                query(
                    "UPDATE channel_code SET config_id = COALESCE(?, config_id), qr_code = COALESCE(?, qr_code), \
                     active_users = ?, synced_version = ?, sync_error = NULL, \
                     sync_status = CASE WHEN version = ? THEN 'synced' ELSE sync_status END WHERE id = ?",
                )
                .bind(cfg)
                .bind(qr)
                .bind(json!(users).to_string())
                .bind(row.version)
                .bind(row.version)
                .bind(row.id),
            )
            .await?;
        }
    }
    Ok(JobOutcome::Done)
}

/// Enqueue a push of a code from a job (its errors retry the job).
async fn enqueue_from_job(
    state: &AppState,
    tx: &mut Tx,
    tenant_id: i64,
    code_id: i64,
    why: &str,
) -> Result<(), JobError> {
    let job = push_job(tenant_id, code_id, why).map_err(JobError::retryable)?;
    state
        .jobs
        .enqueue(tx, job)
        .await
        .map_err(JobError::retryable)?;
    Ok(())
}

/// `automation.channel_code.daily` (00:00 Asia/Shanghai): every code with daily limits goes
/// back to its primary staff.
pub async fn run_daily(
    state: AppState,
    _ctx: JobContext,
    _p: Value,
) -> Result<JobOutcome, JobError> {
    let rows: Vec<(i64, i64, String)> = state
        .db
        .fetch_all(query(
            "SELECT tenant_id, id, staff FROM channel_code WHERE deleted = 0 AND config_id IS NOT NULL",
        ))
        .await?;
    let day = day_of(now_ms());
    let mut tx = state.db.begin().await?;
    for (tenant, id, staff) in rows {
        let staff: Vec<StaffLimit> = json_col(Some(&staff));
        if staff.iter().any(|s| s.daily_limit > 0) {
            enqueue_from_job(&state, &mut tx, tenant, id, &format!("day:{day}")).await?;
        }
    }
    tx.commit().await?;
    Ok(JobOutcome::Done)
}

/// `automation.channel_code.hours` (every minute): a code whose members have working hours
/// follows them — when the members it should route to now differ from those its contact way
/// has, it is pushed again (a member's hours ending hands the code to the others or the backup
/// staff, as a daily limit does; their start brings it back).
pub async fn run_hours(
    state: AppState,
    _ctx: JobContext,
    _p: Value,
) -> Result<JobOutcome, JobError> {
    // Only codes with hours (a member's JSON names workDays or workStart) and already in WeCom.
    let rows: Vec<CodeRow> = state
        .db
        .fetch_all(query(format!(
            "SELECT {COLUMNS} FROM channel_code WHERE deleted = 0 AND config_id IS NOT NULL \
             AND (staff LIKE '%\"workDays\"%' OR staff LIKE '%\"workStart\"%')"
        )))
        .await?;
    let now = now_ms();
    let day = day_of(now);
    let minute = now / 60_000;
    let mut tx = state.db.begin().await?;
    for row in rows {
        let adds = adds_on(&state.db, row.tenant_id, row.id, &day).await?;
        let users = active_users(&row.staff(), &row.backup_staff(), &adds, now);
        let current: Vec<String> = json_col(row.active_users.as_deref());
        if users != current {
            // One push per change of members (a hash of who) per minute.
            let who = users
                .join(",")
                .bytes()
                .fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
                    (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
                });
            let why = format!("hours:{minute}:{who:x}");
            enqueue_from_job(&state, &mut tx, row.tenant_id, row.id, &why).await?;
        }
    }
    tx.commit().await?;
    Ok(JobOutcome::Done)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn member(userid: &str, limit: i64, hours: Option<(&str, &str)>) -> StaffLimit {
        StaffLimit {
            userid: userid.into(),
            daily_limit: limit,
            work_days: if hours.is_some() {
                vec![1, 2, 3, 4, 5]
            } else {
                vec![]
            },
            work_start: hours.map(|h| h.0.to_string()),
            work_end: hours.map(|h| h.1.to_string()),
        }
    }

    #[test]
    fn the_code_follows_hours_and_limits_then_backup() {
        let tz = crate::automation::shanghai();
        let at = |d: u32, h: u32| {
            tz.with_ymd_and_hms(2026, 11, d, h, 0, 0)
                .unwrap()
                .timestamp_millis()
        };
        let staff = [
            member("day", 0, Some(("09:00", "18:00"))),
            member("night", 2, Some(("18:00", "24:00"))),
        ];
        let backup = ["spare".to_string()];
        // Monday 2026-11-23: 10:00 the day member, 20:00 the night one, 03:00 nobody.
        assert_eq!(active_users(&staff, &backup, &[], at(23, 10)), ["day"]);
        assert_eq!(active_users(&staff, &backup, &[], at(23, 20)), ["night"]);
        assert_eq!(active_users(&staff, &backup, &[], at(23, 3)), ["spare"]);
        // The night member full: the backup, as outside the hours.
        let full = [("night".to_string(), 2)];
        assert_eq!(active_users(&staff, &backup, &full, at(23, 20)), ["spare"]);
        // Saturday: nobody works; no backup: every member (WeCom needs one).
        assert_eq!(active_users(&staff, &[], &[], at(28, 10)), ["day", "night"]);
        // No hours: always.
        assert_eq!(
            active_users(&[member("any", 0, None)], &backup, &[], at(28, 3)),
            ["any"]
        );
    }
}

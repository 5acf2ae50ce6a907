//! Welcome messages (欢迎语): a text with variables (`{nickname}`, `{date}`, `{staff}`) and up to
//! nine attachments from the material library, for members (one message for some members, or a
//! default for everyone) and for channel codes. They go out with send_welcome_msg and the
//! callback's WelcomeCode, which WeCom accepts once and only for 20 seconds, so the send happens
//! while the callback is processed, not in a later job; every send (or why none went) is recorded
//! in `welcome_send`.

use axum::extract::State;
use axum::http::Method;
use scrm_db::{Db, DbResult, query};
use scrm_wecom::WeComError;
use scrm_wecom::client::{Text, WelcomeMsg};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::json_col;
use crate::audit;
use crate::auth::CurrentUser;
use crate::auth::permissions as perm;
use crate::http::envelope::{ListPage, Paging, Reply, created, ok};
use crate::http::extract::{ApiJson, ApiPath, ApiQuery};
use crate::http::routes::{Access, Routes};
use crate::http::{ApiError, ApiResult};
use crate::operation::materials;
use crate::operation::wecom::TenantWeCom;
use crate::state::{AppState, iso, now_ms};

/// The welcome-message routes.
pub fn routes(state: &AppState) -> Routes {
    Routes::new(state, "automation")
        .route(
            Method::POST,
            "/api/v1/automation/welcome-messages",
            Access::Permission(perm::WELCOME_MANAGE),
            "Create a welcome message for members (text with {nickname} {date} {staff}, materials)",
            create_message,
        )
        .route(
            Method::GET,
            "/api/v1/automation/welcome-messages",
            Access::Permission(perm::WELCOME_VIEW),
            "List welcome messages (page, size)",
            list_messages,
        )
        .route(
            Method::GET,
            "/api/v1/automation/welcome-messages/{id}",
            Access::Permission(perm::WELCOME_VIEW),
            "One welcome message",
            get_message,
        )
        .route(
            Method::PUT,
            "/api/v1/automation/welcome-messages/{id}",
            Access::Permission(perm::WELCOME_MANAGE),
            "Change a welcome message",
            update_message,
        )
        .route(
            Method::DELETE,
            "/api/v1/automation/welcome-messages/{id}",
            Access::Permission(perm::WELCOME_MANAGE),
            "Delete a welcome message",
            delete_message,
        )
        .route(
            Method::GET,
            "/api/v1/automation/welcome-sends",
            Access::Permission(perm::WELCOME_VIEW),
            "Welcomes sent or not sent (page, size, status, externalUserid, source)",
            list_sends,
        )
}

/// What a welcome says: a text with variables, and materials as attachments.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct WelcomeContent {
    pub text: Option<String>,
    pub material_ids: Vec<i64>,
}

/// WeCom's limits (API-FACTS §8): text ≤ 4000 bytes, ≤ 9 attachments.
const MAX_TEXT_BYTES: usize = 4000;
const MAX_ATTACHMENTS: usize = 9;

impl WelcomeContent {
    /// Check the content; `field` prefixes the names in errors (`welcome.text`).
    pub async fn check(&self, db: &Db, tenant_id: i64, field: &str) -> ApiResult<()> {
        let text = self.text.as_deref().map(str::trim).unwrap_or("");
        if text.is_empty() && self.material_ids.is_empty() {
            return Err(ApiError::field(
                fname(field, "text"),
                "a text or at least one material is required",
            ));
        }
        if text.len() > MAX_TEXT_BYTES {
            return Err(ApiError::field(
                fname(field, "text"),
                format!("at most {MAX_TEXT_BYTES} bytes"),
            ));
        }
        if self.material_ids.len() > MAX_ATTACHMENTS {
            return Err(ApiError::field(
                fname(field, "materialIds"),
                format!("at most {MAX_ATTACHMENTS} materials"),
            ));
        }
        for id in &self.material_ids {
            if materials::get(db, tenant_id, *id).await?.is_none() {
                return Err(ApiError::field(
                    fname(field, "materialIds"),
                    format!("material {id} does not exist"),
                ));
            }
        }
        Ok(())
    }
}

/// `prefix.name`, or `name` alone without a prefix.
fn fname(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_string()
    } else {
        format!("{prefix}.{name}")
    }
}

/// The values of a welcome's variables.
#[derive(Debug, Clone, Default)]
pub struct Vars {
    pub nickname: String,
    pub date: String,
    pub staff: String,
}

/// Replace `{nickname}`, `{date}` and `{staff}` (also `{staffName}`) in `text`.
pub fn render(text: &str, v: &Vars) -> String {
    text.replace("{nickname}", &v.nickname)
        .replace("{date}", &v.date)
        .replace("{staffName}", &v.staff)
        .replace("{staff}", &v.staff)
}

/// The WeCom message for a welcome: the rendered text and each material as an attachment (a
/// text material adds its text when the welcome has none).
pub async fn to_wecom(
    state: &AppState,
    tenant_id: i64,
    wecom: &TenantWeCom,
    content: &WelcomeContent,
    vars: &Vars,
) -> anyhow::Result<(Option<Text>, Vec<scrm_wecom::client::Attachment>)> {
    let mut text = content
        .text
        .as_deref()
        .filter(|t| !t.trim().is_empty())
        .map(|t| render(t, vars));
    let mut attachments = Vec::new();
    for id in &content.material_ids {
        let (t, a) = materials::wecom_parts(state, tenant_id, wecom, *id).await?;
        if text.is_none() {
            text = t.map(|t| render(&t, vars));
        }
        attachments.extend(a);
    }
    Ok((text.map(|content| Text { content }), attachments))
}

/// Where a welcome came from.
pub mod source {
    pub const CHANNEL_CODE: &str = "channel_code";
    pub const STAFF: &str = "staff";
}

/// One welcome to send (or to record as not sent).
pub struct Send<'a> {
    pub tenant_id: i64,
    pub welcome_code: Option<&'a str>,
    pub customer_id: Option<i64>,
    pub external_userid: &'a str,
    pub staff_userid: &'a str,
    pub source: &'static str,
    pub source_id: i64,
    pub content: &'a WelcomeContent,
    pub vars: Vars,
}

/// Send a welcome with the callback's WelcomeCode and record the outcome. A code already used
/// by scrm (the callback processed again) is not used twice. Returns the recorded status.
pub async fn send(state: &AppState, wecom: &TenantWeCom, s: Send<'_>) -> anyhow::Result<String> {
    let Some(code) = s.welcome_code else {
        // WeCom gives no code when the console has a welcome of its own or they already chatted.
        record(
            state,
            &s,
            None,
            "skipped",
            None,
            Some("the callback carried no WelcomeCode"),
        )
        .await?;
        return Ok("skipped".into());
    };
    let done: Option<(String,)> = state
        .db
        .fetch_optional(
            query("SELECT status FROM welcome_send WHERE tenant_id = ? AND welcome_code = ?")
                .bind(s.tenant_id)
                .bind(code),
        )
        .await?;
    if let Some((status,)) = done {
        return Ok(status);
    }
    let (status, content, error) = match to_wecom(state, s.tenant_id, wecom, s.content, &s.vars)
        .await
    {
        Err(e) => ("failed", None, Some(format!("{e:#}"))),
        Ok((text, attachments)) => {
            let msg = WelcomeMsg {
                welcome_code: code.to_string(),
                text,
                attachments,
            };
            let shown = json!({"text": msg.text.as_ref().map(|t| &t.content), "attachments": msg.attachments.len()});
            match wecom.app.send_welcome_msg(&msg).await {
                Ok(()) => ("sent", Some(shown), None),
                Err(e) => ("failed", Some(shown), Some(describe(&e))),
            }
        }
    };
    record(state, &s, Some(code), status, content, error.as_deref()).await?;
    Ok(status.into())
}

fn describe(e: &WeComError) -> String {
    match e.errcode() {
        Some(41051) => format!("{e} (the WelcomeCode was used already or its 20 seconds passed)"),
        _ => e.to_string(),
    }
}

pub(crate) async fn record(
    state: &AppState,
    s: &Send<'_>,
    code: Option<&str>,
    status: &str,
    content: Option<Value>,
    error: Option<&str>,
) -> DbResult<()> {
    let r = state
        .db
        .execute(
            query(
                "INSERT INTO welcome_send (tenant_id, welcome_code, customer_id, external_userid, staff_userid, \
                 source, source_id, status, content, error, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            )
            .bind(s.tenant_id)
            .bind(code)
            .bind(s.customer_id)
            .bind(s.external_userid)
            .bind(s.staff_userid)
            .bind(s.source)
            .bind(s.source_id)
            .bind(status)
            .bind(content.map(|c| c.to_string()))
            .bind(error)
            .bind(now_ms()),
        )
        .await;
    match r {
        // Two processings of one callback racing: the first record stands.
        Err(e) if e.is_conflict() => Ok(()),
        other => other.map(|_| ()),
    }
}

/// The enabled welcome message for a member: one naming the member, else a default one (no
/// members named); the newest wins.
pub async fn for_staff(
    db: &Db,
    tenant_id: i64,
    userid: &str,
) -> DbResult<Option<(i64, WelcomeContent)>> {
    let rows: Vec<MessageRow> = db
        .fetch_all(
            query(format!(
                "SELECT {COLUMNS} FROM welcome_message WHERE tenant_id = ? AND enabled = 1 ORDER BY id DESC"
            ))
            .bind(tenant_id),
        )
        .await?;
    let mut default = None;
    for r in rows {
        let users: Vec<String> = json_col(Some(&r.staff_userids));
        if users.iter().any(|u| u == userid) {
            return Ok(Some((r.id, json_col(Some(&r.content)))));
        }
        if users.is_empty() && default.is_none() {
            default = Some((r.id, json_col(Some(&r.content))));
        }
    }
    Ok(default)
}

const COLUMNS: &str = "id, name, staff_userids, content, enabled, created_at, updated_at";

#[derive(Debug, sqlx::FromRow)]
pub(crate) struct MessageRow {
    id: i64,
    name: String,
    staff_userids: String,
    content: String,
    enabled: i64,
    created_at: i64,
    updated_at: i64,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct MessageView {
    id: i64,
    name: String,
    staff_userids: Vec<String>,
    text: Option<String>,
    material_ids: Vec<i64>,
    enabled: bool,
    create_time: String,
    update_time: String,
}

impl From<MessageRow> for MessageView {
    fn from(r: MessageRow) -> Self {
        let c: WelcomeContent = json_col(Some(&r.content));
        MessageView {
            id: r.id,
            name: r.name,
            staff_userids: json_col(Some(&r.staff_userids)),
            text: c.text,
            material_ids: c.material_ids,
            enabled: r.enabled == 1,
            create_time: iso(r.created_at),
            update_time: iso(r.updated_at),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct MessageBody {
    name: Option<String>,
    #[serde(default)]
    staff_userids: Vec<String>,
    text: Option<String>,
    #[serde(default)]
    material_ids: Vec<i64>,
    enabled: Option<bool>,
}

/// Check that every userid is a member of the tenant; `field` names the list in errors.
pub async fn check_staff(
    db: &Db,
    tenant_id: i64,
    userids: &[String],
    field: &str,
) -> ApiResult<()> {
    for u in userids {
        let n = db
            .fetch_i64(
                query("SELECT COUNT(*) FROM staff WHERE tenant_id = ? AND userid = ?")
                    .bind(tenant_id)
                    .bind(u),
            )
            .await?;
        if n == 0 {
            return Err(ApiError::field(
                field,
                format!("no member with userid {u:?}"),
            ));
        }
    }
    Ok(())
}

pub(crate) async fn checked(
    db: &Db,
    tenant_id: i64,
    b: MessageBody,
) -> ApiResult<(String, Vec<String>, WelcomeContent, bool)> {
    let name = b
        .name
        .map(|n| n.trim().to_string())
        .filter(|n| !n.is_empty())
        .ok_or_else(|| ApiError::field("name", "is required"))?;
    if name.chars().count() > 100 {
        return Err(ApiError::field("name", "at most 100 characters"));
    }
    let content = WelcomeContent {
        text: b.text,
        material_ids: b.material_ids,
    };
    content.check(db, tenant_id, "").await?;
    let mut users = b.staff_userids;
    users.sort();
    users.dedup();
    check_staff(db, tenant_id, &users, "staffUserids").await?;
    Ok((name, users, content, b.enabled.unwrap_or(true)))
}

pub(crate) async fn get_row(db: &Db, tenant_id: i64, id: i64) -> DbResult<Option<MessageRow>> {
    db.fetch_optional(
        query(format!(
            "SELECT {COLUMNS} FROM welcome_message WHERE tenant_id = ? AND id = ?"
        ))
        .bind(tenant_id)
        .bind(id),
    )
    .await
}

pub(crate) async fn create_message(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiJson(body): ApiJson<MessageBody>,
) -> ApiResult<Reply<Value>> {
    let (name, users, content, enabled) = checked(&state.db, user.tenant_id, body).await?;
    let now = now_ms();
    let mut tx = state.db.begin().await?;
    let id = tx
        .insert_id(
            query(
                "INSERT INTO welcome_message (tenant_id, name, staff_userids, content, enabled, created_by, created_at, updated_at) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            )
            .bind(user.tenant_id)
            .bind(&name)
            .bind(json!(users).to_string())
            .bind(json!(content).to_string())
            .bind(enabled as i64)
            .bind(user.id)
            .bind(now)
            .bind(now),
        )
        .await?;
    audit::record(
        &mut tx,
        &user,
        "welcome.create",
        "welcome_message",
        id,
        json!({"name": name}),
    )
    .await?;
    tx.commit().await?;
    let row = get_row(&state.db, user.tenant_id, id)
        .await?
        .ok_or(ApiError::NotFound("welcome message"))?;
    Ok(created(json!(MessageView::from(row))))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct PageQuery {
    page: Option<i64>,
    size: Option<i64>,
}

pub(crate) async fn list_messages(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> ApiResult<Reply<ListPage<Value>>> {
    let paging = Paging::new(q.page, q.size, 20, 100)?;
    let total = state
        .db
        .fetch_i64(
            query("SELECT COUNT(*) FROM welcome_message WHERE tenant_id = ?").bind(user.tenant_id),
        )
        .await?;
    let rows: Vec<MessageRow> = state
        .db
        .fetch_all(
            query(format!(
                "SELECT {COLUMNS} FROM welcome_message WHERE tenant_id = ? ORDER BY id DESC LIMIT ? OFFSET ?"
            ))
            .bind(user.tenant_id)
            .bind(paging.size)
            .bind(paging.offset()),
        )
        .await?;
    Ok(ok(ListPage {
        list: rows
            .into_iter()
            .map(|r| json!(MessageView::from(r)))
            .collect(),
        total,
        page: paging.page,
        size: paging.size,
    }))
}

pub(crate) async fn get_message(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Reply<Value>> {
    let row = get_row(&state.db, user.tenant_id, id)
        .await?
        .ok_or(ApiError::NotFound("welcome message"))?;
    Ok(ok(json!(MessageView::from(row))))
}

pub(crate) async fn update_message(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiPath(id): ApiPath<i64>,
    ApiJson(body): ApiJson<MessageBody>,
) -> ApiResult<Reply<Value>> {
    get_row(&state.db, user.tenant_id, id)
        .await?
        .ok_or(ApiError::NotFound("welcome message"))?;
    let (name, users, content, enabled) = checked(&state.db, user.tenant_id, body).await?;
    let mut tx = state.db.begin().await?;
    tx.execute(
        query(
            "UPDATE welcome_message SET name = ?, staff_userids = ?, content = ?, enabled = ?, updated_at = ? \
             WHERE tenant_id = ? AND id = ?",
        )
        .bind(&name)
        .bind(json!(users).to_string())
        .bind(json!(content).to_string())
        .bind(enabled as i64)
        .bind(now_ms())
        .bind(user.tenant_id)
        .bind(id),
    )
    .await?;
    audit::record(
        &mut tx,
        &user,
        "welcome.update",
        "welcome_message",
        id,
        json!({"name": name}),
    )
    .await?;
    tx.commit().await?;
    let row = get_row(&state.db, user.tenant_id, id)
        .await?
        .ok_or(ApiError::NotFound("welcome message"))?;
    Ok(ok(json!(MessageView::from(row))))
}

pub(crate) async fn delete_message(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Reply<Value>> {
    let mut tx = state.db.begin().await?;
    let n = tx
        .execute(
            query("DELETE FROM welcome_message WHERE tenant_id = ? AND id = ?")
                .bind(user.tenant_id)
                .bind(id),
        )
        .await?
        .rows_affected;
    if n == 0 {
        return Err(ApiError::NotFound("welcome message"));
    }
    audit::record(
        &mut tx,
        &user,
        "welcome.delete",
        "welcome_message",
        id,
        json!({}),
    )
    .await?;
    tx.commit().await?;
    Ok(ok(json!({"id": id, "deleted": true})))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct SendsQuery {
    page: Option<i64>,
    size: Option<i64>,
    status: Option<String>,
    source: Option<String>,
    external_userid: Option<String>,
}

#[derive(Debug, sqlx::FromRow)]
pub(crate) struct SendRow {
    id: i64,
    customer_id: Option<i64>,
    external_userid: String,
    staff_userid: String,
    source: String,
    source_id: i64,
    status: String,
    content: Option<String>,
    error: Option<String>,
    created_at: i64,
}

pub(crate) async fn list_sends(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiQuery(q): ApiQuery<SendsQuery>,
) -> ApiResult<Reply<ListPage<Value>>> {
    let paging = Paging::new(q.page, q.size, 20, 100)?;
    let mut cond = query(" WHERE tenant_id = ?").bind(user.tenant_id);
    if let Some(s) = q.status.filter(|s| !s.is_empty()) {
        cond.push_sql(" AND status = ?").push_bind(s);
    }
    if let Some(s) = q.source.filter(|s| !s.is_empty()) {
        cond.push_sql(" AND source = ?").push_bind(s);
    }
    if let Some(e) = q.external_userid.filter(|s| !s.is_empty()) {
        cond.push_sql(" AND external_userid = ?").push_bind(e);
    }
    let (rows, total): (Vec<SendRow>, i64) = paging
        .fetch(
            &state.db,
            "SELECT COUNT(*) FROM welcome_send",
            "SELECT id, customer_id, external_userid, staff_userid, source, source_id, status, content, error, created_at FROM welcome_send",
            &cond,
            "id",
        )
        .await?;
    let list = rows
        .into_iter()
        .map(|r| {
            json!({
                "id": r.id,
                "customerId": r.customer_id,
                "externalUserid": r.external_userid,
                "staffUserid": r.staff_userid,
                "source": r.source,
                "sourceId": r.source_id,
                "status": r.status,
                "content": r.content.and_then(|c| serde_json::from_str::<Value>(&c).ok()),
                "error": r.error,
                "createTime": iso(r.created_at),
            })
        })
        .collect();
    Ok(ok(ListPage {
        list,
        total,
        page: paging.page,
        size: paging.size,
    }))
}
